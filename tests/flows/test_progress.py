"""Progress and the presenter of stage events: a bar in a terminal, a few lines elsewhere, never a flood."""

from pathlib import Path

from artifacts.batches import ShardWritten
from flows.progress import Presenter, Progress
from tasks.train.events import EpochEnd, Resumed


def test_without_a_terminal_progress_logs_a_few_lines_not_a_flood():
    lines: list[str] = []
    progress = Progress(1_000, "training rnn", lines.append, terminal=False)
    for epoch in range(1_000):
        progress.advance(f"perplexity {1000 - epoch}")
    progress.close()
    assert 1 <= len(lines) <= 11
    assert lines[-1] == "training rnn: 1000/1000 (perplexity 1)"


def test_in_a_terminal_it_draws_a_bar_and_logs_nothing():
    lines: list[str] = []
    progress = Progress(5, "writing batch shards", lines.append, terminal=True)
    for _ in range(5):
        progress.advance()
    progress.close()
    assert lines == []
    assert progress.done == 5


def epoch(n, total=4, samples=()):
    row = {"epoch": n, "perplexity": 10.0 / n, "tokens_per_s": 1234.5}
    return EpochEnd(n, total, row, [{"epoch": n, "prefix": "ab", "text": text} for text in samples])


def test_the_presenter_words_each_event():
    lines: list[str] = []
    show = Presenter(lines.append, terminal=False)
    show(Resumed(2, Path("/w/checkpoint.pt")))
    show(epoch(3))
    show(epoch(4, samples=["abcd"]))
    for number in (1, 2):
        show(ShardWritten(number, 2))
    show.close()
    # Epoch 3 logs nothing: it is not a sampled epoch, and progress lines are a second apart at least.
    assert lines == [
        "resuming after epoch 2 from /w/checkpoint.pt",
        "epoch 4: perplexity 2.500, 1,234 tokens/s",
        "  abcd",
        "training: 4/4 (perplexity 2.500)",
        "writing batch shards: 2/2",
    ]


def test_other_library_versions_are_a_warning_that_names_them():
    from artifacts.stages import OtherLibraries

    lines, warnings = [], []
    Presenter(lines.append, terminal=False, warn=warnings.append)(
        OtherLibraries("vocab", "ab" * 32, "numpy", "2.4", "2.3")
    )
    assert lines == []
    assert warnings == [
        "numpy 2.4 is installed, but vocab artifact abababababab was made with numpy 2.3: it is rebuilt, as library "
        "versions are part of the content key. Install the pinned versions (scripts/setup.sh) to reuse the store."
    ]


def test_an_artifact_line_shows_keys_short_and_measures_to_four_digits():
    from types import SimpleNamespace

    from flows.progress import artifact_line

    ref = SimpleNamespace(
        key="3" * 64,
        cache_hit=False,
        summary={"model_key": "ab" * 32, "perplexity": 452.81254, "chars": 9000, "source": "/x", "samples": []},
    )
    assert (
        artifact_line("evaluate", ref)
        == f"evaluate {'3' * 12}  computed  model_key={'ab' * 6}, perplexity=452.8, chars=9000"
    )
