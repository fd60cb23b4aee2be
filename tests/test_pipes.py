"""Output piped into a reader that stops early (`superres models --json | head -5`) ends quietly, as Unix tools do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def run_into_closed_pipe(*argv: str) -> subprocess.CompletedProcess:
    """Run `python -m superres ARGV` with its stdout a pipe whose reader has gone before anything was written."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: every write meets a closed pipe
    try:
        return subprocess.run([sys.executable, "-m", "superres", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              env=env, timeout=120, text=True)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("argv, code", [
    (["models", "--json"], 141), (["models", "--inspect", "rescnn"], 141),
    (["--help"], 0),  # argparse drops what it cannot print and exits as it would have
])
def test_a_closed_pipe_ends_quietly(argv, code):
    result = run_into_closed_pipe(*argv)
    assert result.stderr == "" and result.returncode == code


def test_head_reads_the_first_lines_and_nothing_complains():
    """The real thing, through a shell: whatever the timing, no traceback and the first lines arrive."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = f"{sys.executable} -m superres models --json | head -2"
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["[", "  {"]
