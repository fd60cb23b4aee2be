from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared data folder {SHARED} is not here")
    return SHARED


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, stay fast when other processes share the cores, and add up their
    numbers in the same order in every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """A tiny random x4 rescnn (8 channels, 1 block) saved as a weights file."""
    from superres.models import build_model
    from superres.weights import save_weights

    torch.manual_seed(0)
    args = {"scale": 4, "channels": 8, "num_blocks": 1}
    path = tmp_path / "weights" / "rescnn-x4-tiny-v1.safetensors"
    save_weights(path, build_model("rescnn", **args).eval(), arch="rescnn", args=args, scale=4,
                 degradation="bicubic", recipe={"steps": 0})
    return path
