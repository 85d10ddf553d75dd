"""Training parameters: refused at the edge, the device resolved before keying."""

import pytest
import torch
from pydantic import ValidationError

from tasks.errors import ParameterError
from tasks.train.params import DeviceUnavailable, TrainParams, resolve_device


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"model": "transformer"}, "'scratch', 'rnn', 'gru' or 'lstm'"),
        ({"optimizer": "rmsprop"}, "'sgd' or 'adam'"),
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
