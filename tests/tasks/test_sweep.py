"""A sweep's grid, pure: each value typed by its setting's model, the combinations in order, the cores shared."""

import pytest

from tasks.sweep import MAX_RUNS, GridError, expand, runs, threads_per_run


def test_every_combination_in_order_each_value_typed_by_its_model():
    grid = ("hidden=16,32", "lr=1,1e-3", "clip=none,0.5", "sampler=random,consecutive")
    combinations = expand(grid)
    assert len(combinations) == 16
    assert combinations[:3] == [
        {"hidden": 16, "lr": 1.0, "clip": None, "sampler": "random"},
        {"hidden": 16, "lr": 1.0, "clip": None, "sampler": "consecutive"},
        {"hidden": 16, "lr": 1.0, "clip": 0.5, "sampler": "random"},
    ]
    assert combinations[-1] == {"hidden": 32, "lr": 0.001, "clip": 0.5, "sampler": "consecutive"}
    assert type(combinations[0]["hidden"]) is int


def test_a_combination_overrides_the_settings_and_the_seed_seeds_both_models():
    (first, second) = runs({"hidden": 64, "epochs": 3, "max_chars": 500}, ("seed=0,7",))
    assert first[0] == {"seed": 0}
    assert (second[1].seed, second[2].seed, second[2].hidden, second[1].epochs) == (7, 7, 64, 3)


def test_a_grid_past_the_bound_is_refused():
    with pytest.raises(GridError) as refused:
        expand(("seed=" + ",".join(map(str, range(MAX_RUNS + 1))),))
    assert str(refused.value) == f"the grid makes {MAX_RUNS + 1} runs, more than {MAX_RUNS}; sweep fewer values at once"


@pytest.mark.parametrize(("at_once", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (3, 16, 5)])
def test_runs_at_once_share_the_cores(at_once, cores, threads):
    assert threads_per_run(at_once, cores) == threads
