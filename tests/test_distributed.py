"""Data parallel pretraining under torchrun (gloo on CPU): 2 processes x B/2 follow 1 process x B, only the
summation order of the gradients differs; a 2-process checkpoint resumes in 1 process."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from bertkit.pretrain.loop import rank_slice

CORPUS = "\n".join(
    f"第{i}篇文章。我们今天在北京开会，大家讨论经济改革的问题！人民日报记者报道了会议。" for i in range(60)
)


def test_rank_slices_are_disjoint_and_cover_the_batch():
    batch = {"input_ids": torch.arange(24).view(8, 3), "labels": torch.arange(8)}
    for world in (1, 2, 4):
        parts = [rank_slice(batch, r, world) for r in range(world)]
        assert torch.equal(torch.cat([p["labels"] for p in parts]), batch["labels"])
        assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])


@pytest.mark.slow
def test_two_processes_follow_one_and_resume_in_one(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    tok = tmp_path / "tok"
    subprocess.run(
        [exe, "tokenizer", "train", str(corpus), "--out", str(tok), "--vocab-size", "300"],
        check=True,
        capture_output=True,
        env=env,
    )

    def args(out, steps=6):
        return [
            "pretrain",
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--tokenizer",
            str(tok),
            "--preset",
            "bert-tiny-chinese",
            "--max-seq-length",
            "32",
            "--batch-size",
            "8",
            "--steps",
            str(steps),
            "--save-every",
            "3",
            "--dropout",
            "0",
            "--precision",
            "fp32",
            "--lr",
            "1e-3",
            "--warmup",
            "2",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]

    def done(result):
        assert result.returncode == 0, result.stderr[-3000:]

    done(subprocess.run([exe, *args(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=600))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done(
        subprocess.run(
            [*torchrun, "-m", "bertkit.cli", *args(tmp_path / "two")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    )

    def weights(run):
        return load_file(str(run / "model" / "model.safetensors"))

    def losses(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["mlm_loss"] + r.get("nsp_loss", 0) for r in rows if "step" in r]

    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2

    # the 2-process run's step-3 checkpoint, resumed in 1 process, ends where both runs ended
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000006", ignore_errors=True)
    done(subprocess.run([exe, *args(resumed), "--resume"], capture_output=True, text=True, env=env, timeout=600))
    again = weights(resumed)
    assert max(float((again[k] - two[k]).abs().max()) for k in two) < 1e-4
