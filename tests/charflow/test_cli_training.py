"""The training settings past the book on the command line: each bad combination one line, exit 2, before any
work."""

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x", "--patience", "2"], "--patience stops on the validation perplexity, but these batches hold no"),
        (["train", "x", "--eval-every", "2"], "no validation split; add --val-fraction (0.1, say)"),
        (
            ["run", "x", "--epochs", "2", "--warmup-steps", "17"],
            "--warmup-steps 17 is longer than the whole training (16 optimizer steps at most, with --max-chars=10000)",
        ),
        (["run", "x", "--lr-schedule", "step", "--lr-decay", "0"], "lr_decay=0.0: Input should be greater than 0"),
        (["run", "x", "--lr-decay", "0.5"], "lr_decay and lr_step_epochs set the step schedule; add --lr-schedule"),
        (["run", "x", "--weight-decay", "0.1"], "weight_decay is AdamW's decoupled decay, not sgd's; use --optimizer"),
        (["run", "x", "--lr-schedule", "linear"], "invalid choice: 'linear'"),
        (["train", "--batches", "abc", "--patience", "0"], "patience=0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_training_settings_are_one_line_and_exit_2_before_any_work(cli, home, args, message):
    code, out, err = cli(*args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 or "usage:" in err  # argparse's own refusals print the usage
    assert out == ""
    assert not (home / "store").exists()
