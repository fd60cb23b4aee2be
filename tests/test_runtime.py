import pytest
import torch

from superres import runtime

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: native)
    assert runtime.resolve_precision("auto", CPU) == expected
    assert runtime.resolve_precision("fp16", CPU) == "fp16"  # an explicit choice is kept


def test_unknown_precision_and_thread_counts_are_refused():
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve_precision("int4", CPU)
    with pytest.raises(ValueError, match="threads"):
        runtime.set_threads(0)


def test_threads_and_tile_batches():
    before = torch.get_num_threads()
    try:
        runtime.set_threads(1)
        assert torch.get_num_threads() == 1
        runtime.set_threads(None)  # keeps the current setting
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert runtime.tile_batch(CPU) == 1 and runtime.tile_batch(torch.device("cuda")) == 4
