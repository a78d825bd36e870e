"""benchmarks/bench_gpu.py waits for a GPU machine; its --smoke mode runs the same code on the CPU with a tiny
model, so the script is known to work the day a GPU is lent (no figure of it is checked: timings never are)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_bench_gpu_smoke_runs_every_section():
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("pretraining 2x64") == 2 and out.count("embedding all-MiniLM-L6-v2") == 5
    assert "MFU" in out and out.strip().splitlines()[-1].startswith("summary: bertkit on CPU")


def test_useful_pretraining_flops_follow_the_formula():
    sys.path.insert(0, str(SCRIPT.parent))
    from bench_gpu import pretraining_flops

    from bertkit.config import from_preset

    c = from_preset("bert-base")
    H, V = 768, c.vocab_size
    per_layer = 2 * 128 * (4 * H * H + 2 * H * 3072) + 4 * 128 * 128 * H
    head = 2 * 20 * (H * H + H * V) + 2 * (H * H + 2 * H)
    assert pretraining_flops(c, 1, 128, 20) == 3 * (12 * per_layer + head)


def test_bench_finetune_runs_both_implementations():
    script = SCRIPT.parent / "bench_finetune.py"
    args = ["--layers", "1", "--hidden", "64", "--vocab", "300", "--batch", "2", "--seq", "8", "--steps", "1"]
    result = subprocess.run(
        [sys.executable, str(script), *args, "--precision", "fp32"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fp32 2 x 8: bertkit" in result.stdout and result.stdout.strip().splitlines()[-1] == (
        "summary: fp32 x8 " + result.stdout.split("-> ")[1].split()[0]
    )
