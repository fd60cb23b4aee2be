from __future__ import annotations

import pytest
import torch

import superres.checkpoint as checkpoint
from superres.checkpoint import CheckpointError, load_checkpoint, previous_path, read_checkpoint, save_checkpoint


def state(value: float) -> dict:
    generator = torch.Generator().manual_seed(3)
    return {
        "step": int(value),
        "weights": {"w": torch.full((4, 4), value)},
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
        "config": 'name = "x"\n',
        "optimizer": torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]).state_dict(),
    }


def test_round_trip_with_weights_only_loading(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", state(1.0))
    loaded = load_checkpoint(path)
    assert loaded.path == path and loaded.skipped == ()
    assert loaded.state["step"] == 1 and loaded.state["config"] == 'name = "x"\n'
    assert torch.equal(loaded.state["weights"]["w"], torch.ones(4, 4))
    torch.Generator().set_state(loaded.state["rng"]["data"])  # RNG states come back as usable tensors
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary files left


def test_previous_checkpoint_is_kept(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1.0))
    save_checkpoint(path, state(2.0))
    assert previous_path(path) == tmp_path / "last.prev.pt"
    assert read_checkpoint(path)["step"] == 2
    assert read_checkpoint(previous_path(path))["step"] == 1


def test_truncated_file_is_detected_and_the_previous_one_is_used(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1.0))
    save_checkpoint(path, state(2.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)
    loaded = load_checkpoint(path)
    assert loaded.path == previous_path(path) and loaded.state["step"] == 1
    assert len(loaded.skipped) == 1 and str(path) in loaded.skipped[0]
    with pytest.raises(CheckpointError):
        load_checkpoint(path, fallback=False)


def test_no_usable_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_checkpoint(path)
    torch.save({"step": 1}, path)  # a valid torch file, but not ours
    with pytest.raises(CheckpointError, match="not a superres-checkpoint"):
        read_checkpoint(path)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint.FORMAT, "obj": object()}, path)
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_a_crash_while_writing_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1.0))

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, state(2.0))
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    import os

    class Payload:
        def __reduce__(self):  # unpickled unsafely, this would run a shell command
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint.FORMAT, "step": 1, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
