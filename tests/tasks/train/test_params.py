"""Training parameters: refused at the edge, the device resolved before keying."""

import pytest
import torch
from pydantic import ValidationError

from tasks.errors import ParameterError
from tasks.train.params import DeviceUnavailable, TrainParams, resolve_device


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"model": "mamba"}, "'scratch', 'rnn', 'gru', 'lstm' or 'transformer'"),
        ({"model": "transformer", "hidden": 10, "heads": 4}, "heads=4 does not divide hidden=10"),
        ({"heads": 0}, "heads"),
        ({"optimizer": "rmsprop"}, "'sgd', 'adam' or 'adamw'"),
        ({"lr": 0}, "lr"),
        ({"device": "tpu"}, "device"),
        ({"prefixes": ("",)}, "at least one character"),
        ({"hidden_size": 3}, "hidden_size"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
    ],
)
def test_bad_training_params_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        TrainParams(**bad)


def test_the_device_is_resolved_outside_the_model():
    params = TrainParams()
    assert params.device == "auto"  # constructing parameters probes nothing
    resolved = resolve_device(params)
    assert resolved.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(TrainParams(device="cpu")).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_parameter_error():
    with pytest.raises(DeviceUnavailable, match="no CUDA device is visible; use --device cpu or auto") as err:
        resolve_device(TrainParams(device="cuda"))
    assert isinstance(err.value, ParameterError)
    assert err.value.exit_code == 2


def test_prefixes_are_checked_against_the_vocabulary():
    import numpy as np

    from tasks.train.params import PrefixError, check_prefixes
    from tasks.vocab import Vocab

    vocab = Vocab(tokens=list("ab分开"), counts=np.ones(4, dtype=np.int64), reserved=0)
    check_prefixes(vocab, ("分开", "ab"))
    with pytest.raises(
        PrefixError, match=r"the prediction prefix 'a☃z' has characters the vocabulary lacks \('z', '☃'\)"
    ):
        check_prefixes(vocab, ("ab", "a☃z"))
    with_unk = Vocab(tokens=["<unk>", "a"], counts=np.ones(2, dtype=np.int64), reserved=1)
    check_prefixes(with_unk, ("☃",))  # <unk> stands in for it


def test_precision_is_keyed_and_the_cuda_graph_is_not():
    """bf16 changes the numbers; replaying a captured graph runs the eager step's kernels and does not."""
    from artifacts.keys import keyed_params

    book = keyed_params(TrainParams())
    assert book["precision"] == "fp32"
    assert "cuda_graph" not in book
    assert keyed_params(TrainParams(precision="bf16")) != book
    assert keyed_params(TrainParams(cuda_graph=False)) == book
    with pytest.raises(ValueError, match="precision"):
        TrainParams(precision="fp16")


def test_the_new_settings_leave_the_book_key_as_it_was():
    """At their neutral defaults the settings past the book are out of the key: today's runs keep their keys."""
    from artifacts.keys import keyed_params

    assert keyed_params(TrainParams(device="cpu")) == {
        "model": "scratch",
        "hidden": 256,
        "layers": 1,
        "dropout": 0,
        "optimizer": "sgd",
        "lr": 100,
        "clip": 0.01,
        "seed": 0,
        "device": "cpu",
        "precision": "fp32",
        "nproc": 1,
        "pred_period": 50,
        "prefixes": ["分开", "不分开"],
        "pred_chars": 50,
    }
    changed = {
        "lr_schedule": "cosine",
        "warmup_steps": 3,
        "eval_every": 2,
        "patience": 4,
        "optimizer": "adamw",
        "weight_decay": 0.1,
    }
    for name, value in changed.items():
        assert name in keyed_params(TrainParams(**{"device": "cpu", "optimizer": "adamw", name: value}))
    step = keyed_params(TrainParams(device="cpu", lr_schedule="step", lr_decay=0.5, lr_step_epochs=7))
    assert (step["lr_schedule"], step["lr_decay"], step["lr_step_epochs"]) == ("step", 0.5, 7)


def test_heads_are_keyed_only_when_not_the_default():
    """--heads came after the recurrent models: at its default 4 the existing runs keep their keys."""
    from artifacts.keys import keyed_params

    assert "heads" not in keyed_params(TrainParams())
    assert keyed_params(TrainParams(model="transformer", hidden=8, heads=2))["heads"] == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"lr_decay": 0, "lr_schedule": "step"}, "lr_decay\n  Input should be greater than 0"),
        ({"lr_decay": 1.5, "lr_schedule": "step"}, "lr_decay\n  Input should be less than or equal to 1"),
        ({"lr_step_epochs": 0, "lr_schedule": "step"}, "lr_step_epochs"),
        ({"lr_schedule": "linear"}, "'constant', 'cosine' or 'step'"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"eval_every": 0}, "eval_every"),
        ({"patience": 0}, "patience"),
        ({"weight_decay": -0.1, "optimizer": "adamw"}, "weight_decay"),
        ({"weight_decay": 0.1}, "weight_decay is AdamW's decoupled decay, not sgd's; use --optimizer adamw"),
        ({"weight_decay": 0.1, "optimizer": "adam"}, "not adam's; use --optimizer adamw"),
        ({"lr_decay": 0.5}, "lr_decay and lr_step_epochs set the step schedule; add --lr-schedule step"),
        ({"lr_step_epochs": 10, "lr_schedule": "cosine"}, "add --lr-schedule step"),
    ],
)
def test_bad_schedules_and_decays_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        TrainParams(**bad)


def test_settings_that_need_validation_or_steps_are_refused_with_one_line():
    from tasks.train.params import NoValidation, WarmupTooLong, check_validation, check_warmup

    check_validation(TrainParams(patience=2, eval_every=3), 0.1)
    with pytest.raises(NoValidation, match=r"^--patience stops on the validation perplexity, .*add --val-fraction"):
        check_validation(TrainParams(patience=2), 0.0)
    with pytest.raises(NoValidation, match=r"^--eval-every sets how often to validate, .*add --val-fraction"):
        check_validation(TrainParams(eval_every=2), 0.0)
    check_warmup(TrainParams(warmup_steps=8), 8)
    with pytest.raises(
        WarmupTooLong,
        match=r"^--warmup-steps 9 is longer than the whole training \(8 optimizer steps\); lower --warmup-steps",
    ):
        check_warmup(TrainParams(warmup_steps=9), 8)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"chars": -5}, "chars"),
        ({"chars": 100_001}, "less than or equal to 100000"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 65}, "less than or equal to 64"),
        ({"prefixes": ("",)}, "a prefix must have at least one character"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_generate_params_are_refused(bad, message):
    from tasks.train.params import GenerateParams

    with pytest.raises(ValidationError, match=message):
        GenerateParams(**bad)


def test_a_prefix_file_is_one_more_prefix_read_before_any_work(tmp_path):
    from tasks.train.params import GenerateParams, PrefixFileError, generate_prefixes

    assert generate_prefixes(GenerateParams()) == ("分开",)
    text = tmp_path / "prefix.txt"
    text.write_text("不分开\n", encoding="utf-8")
    assert generate_prefixes(GenerateParams(prefix_file=text)) == ("不分开",)  # the file's alone, less its line break
    assert generate_prefixes(GenerateParams(prefixes=("分开",), prefix_file=text)) == ("分开", "不分开")
    for content, message in [(b"", "is empty"), (b"\xff\xfe", "it is not UTF-8 text")]:
        text.write_bytes(content)
        with pytest.raises(PrefixFileError, match=message):
            generate_prefixes(GenerateParams(prefix_file=text))
    with pytest.raises(PrefixFileError, match="No such file or directory"):
        generate_prefixes(GenerateParams(prefix_file=tmp_path / "missing.txt"))
