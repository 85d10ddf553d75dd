"""`charflow sweep`: the grid refused before any work, in one line naming the entry and the fix; a sweep whose run
fails prints every run and exits 1 naming the failed one."""

import json
import shutil

import pytest

from tests.helpers import run_cli

TRAIN_CHOICES = (
    "choose among sampler, batch_size, num_steps, seed, epochs, drop_last, random_offset, materialize, "
    "max_shard_rows, val_fraction, model, hidden, layers, dropout, heads, optimizer, lr, weight_decay, lr_schedule, "
    "warmup_steps, lr_decay, lr_step_epochs, eval_every, patience, clip, device, precision, nproc, cuda_graph, "
    "pred_period, prefixes, pred_chars, checkpoint_every"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "charflow: invalid parameters: grid=(): Value error, a sweep needs at least one --grid NAME=V1,V2,..."),
        (["--grid", "hidden"], "charflow: error: --grid 'hidden' is not NAME=V1,V2,... (hidden=128,256, say)"),
        (["--grid", "hidden=16,"], "charflow: error: --grid 'hidden=16,' is not NAME=V1,V2,... (hidden=128,256, say)"),
        (
            ["--grid", "width=16"],
            f"charflow: error: --grid 'width=16': width is not a training or batches setting; {TRAIN_CHOICES}",
        ),
        (
            ["--grid", "max_chars=100,200"],
            "charflow: error: --grid 'max_chars=100,200': max_chars is a prepare setting, and a sweep trains on one "
            "corpus version; give --max-chars once and run one sweep per value",
        ),
        (["--grid", "lr=0.1,-1"], "charflow: error: --grid 'lr=0.1,-1': lr=-1: Input should be greater than 0"),
        (
            ["--grid", "hidden=16,many"],
            "charflow: error: --grid 'hidden=16,many': hidden=many: Input should be a valid integer, unable to parse "
            "string as an integer",
        ),
        (
            ["--grid", "model=gru,rwkv"],
            "charflow: error: --grid 'model=gru,rwkv': model=rwkv: Input should be 'scratch', 'rnn', 'gru', 'lstm' or "
            "'transformer'",
        ),
        (["--grid", "lr=1,1"], "charflow: error: --grid 'lr=1,1' repeats a value; give each once"),
        (
            ["--grid", "lr=1", "--grid", "lr=2"],
            "charflow: error: lr named in more than one --grid entry; give its values once",
        ),
        (
            ["--hidden", "16", "--grid", "hidden=8,32"],
            "charflow: error: hidden is both --hidden and --grid 'hidden=8,32'; give it once",
        ),
        (
            ["--grid", "optimizer=sgd,adamw", "--weight-decay", "0.1"],
            "charflow: error: the grid's run optimizer=sgd: weight_decay is AdamW's "
            "decoupled decay, not sgd's; use --optimizer adamw",
        ),
        (
            ["--grid", "model=rnn,transformer", "--sampler", "consecutive"],
            "charflow: error: the grid's run model=transformer: the transformer cannot train on consecutive batches",
        ),
        (
            ["--grid", "batch_size=4,64", "--max-chars", "1000"],
            "charflow: error: the grid's run batch_size=64: 28 windows of num_steps=35 in 1000 indices are fewer than "
            "batch_size=64; lower batch_size or num_steps, or turn drop_last off (the cleaned corpus has "
            "--max-chars=1000 at most)",
        ),
        (["--grid", "patience=2,3"], "charflow: error: the grid's run patience=2: --patience stops on the validation"),
        (
            ["--grid", "lr=1", "--max-parallel", "0"],
            "charflow: invalid parameters: max_parallel=0: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_grid_is_one_line_and_exit_2_before_any_work(cli, home, args, message):
    code, out, err = cli("sweep", "x", *args)
    assert code == 2, err
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not (home / "store").exists()


@pytest.mark.slow
def test_a_run_that_fails_fails_alone_and_the_command_exits_1_naming_it(tmp_path, lyrics_zip, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    source = tmp_path / "diverging.zip"  # a corpus name of this test's own on the session's server
    shutil.copy(lyrics_zip, source)
    args = ["sweep", str(source), "--max-chars", "2000", "--epochs", "2", "--batch-size", "8", "--num-steps", "16"]
    args += ["--model", "rnn", "--hidden", "16", "--clip", "none", "--pred-period", "1"]
    # lr 1e9 passes every check (any positive rate may do) and blows the loss up in the first epoch.
    made = run_cli(*args, "--grid", "lr=1,1e9", "--max-parallel", "1", "--json", home=tmp_path, api_url=prefect_server)
    assert made.returncode == 1, made.stderr[-3000:]
    rows = json.loads(made.stdout)
    assert [(r["run"], r["lr"], r["status"]) for r in rows] == [(1, 1.0, "trained"), (2, 1e9, "failed")]
    error = rows[1]["error"]
    assert error.startswith("the loss became ")
    assert error.endswith("lower the learning rate or clip gradients")
    message = f"1 of 2 runs failed: run 2 (lr=1000000000.0): {error}"
    assert made.stderr.strip().splitlines()[-1] == f"charflow: error: {message}"
    with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="sweep diverging v1"))
        )
        (board,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["diverging-sweep-leaderboard"]))
        )
    assert run.state.is_failed()
    assert run.state.message.endswith(message)
    assert board.flow_run_id == run.id
    assert board.data.startswith("## sweep diverging v1: 2 runs, 1 failed\n")
    assert board.data.splitlines()[-1] == f"| 2 | 1000000000.0 | failed |  |  |  |  |  | {error} |"
    assert f"| 1 | 1.0 | trained | `{rows[0]['model'][:12]}` |" in board.data

    again = run_cli(*args, "--grid", "lr=1", home=tmp_path, api_url=prefect_server)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.splitlines()
    assert lines[0].split() == ["run", "lr", "status", "model", "perplexity", "validation"]
    assert lines[1].split()[:4] == ["1", "1.0", "cached", rows[0]["model"][:12]]
