"""Checkpoints: written atomically, loaded without pickle, restoring the model, optimizer and RNG."""

from pathlib import Path

import pytest
import torch

from tasks.train.checkpoint import TrainState, load_checkpoint, save_checkpoint


def model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_a_checkpoint_restores_everything_a_run_needs(tmp_path):
    model, optimizer = model_and_optimizer(0)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    torch.manual_seed(7)
    state = TrainState(epoch=3, metrics=[{"epoch": 3, "perplexity": 1.5}], samples=[{"epoch": 3, "text": "x"}])
    save_checkpoint(tmp_path / "c.pt", model, optimizer, state)
    expected_next = torch.rand(1)
    other, other_optimizer = model_and_optimizer(1)
    loaded = load_checkpoint(tmp_path / "c.pt", other, other_optimizer)
    assert loaded == state
    assert torch.rand(1) == expected_next
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    assert other_optimizer.state_dict()["state"][0]["step"] == 1


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = model_and_optimizer(0)
    save_checkpoint(tmp_path / "c.pt", model, optimizer, TrainState(epoch=1))

    def torn(obj, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "c.pt", model, optimizer, TrainState(epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt", model, optimizer).epoch == 1
