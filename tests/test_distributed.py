"""Data parallel pretraining under torchrun (gloo on CPU): 2 processes x B/2 follow 1 process x B, only the
summation order of the gradients differs; a 2-process checkpoint resumes in 1 process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkit.pretrain.loop import rank_slice

CORPUS = "\n".join(
    f"第{i}篇文章。我们今天在北京开会，大家讨论经济改革的问题！人民日报记者报道了会议。" for i in range(60)
)


def test_over_an_epoch_every_instance_goes_to_exactly_one_rank():
    import itertools

    import numpy as np
    from test_pretrain_loop import VOCAB, Documents

    from bertkit.pretrain.dataset import PretrainingData

    data = PretrainingData(Documents(n=120), VOCAB, np.arange(120), max_seq_length=32, chunk_tokens=400)
    epoch = data.epoch(0)
    width = epoch.input_ids.shape[1]
    rows = {tuple(r) for r in epoch.input_ids.tolist()}
    assert len(rows) == len(epoch)  # the instances are told apart by their ids
    batches = [b for e, _, b in itertools.takewhile(lambda t: t[0] == 0, data.batches(8))]
    per_rank = [[], []]
    for b in batches:
        for r in range(2):
            ids = rank_slice(b, r, 2)["input_ids"]
            ids = torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=VOCAB.pad_id)
            per_rank[r] += [tuple(x) for x in ids.tolist()]
    seen = per_rank[0] + per_rank[1]
    assert len(seen) == len(set(seen)) == len(batches) * 8  # no instance twice, on one rank or two
    assert set(seen) <= rows and len(rows) - len(seen) < 8  # none skipped but the ragged last batch's


def test_rank_slices_are_disjoint_and_cover_the_batch():
    batch = {"input_ids": torch.arange(24).view(8, 3), "labels": torch.arange(8)}
    for world in (1, 2, 4):
        parts = [rank_slice(batch, r, world) for r in range(world)]
        assert torch.equal(torch.cat([p["labels"] for p in parts]), batch["labels"])
        assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])


def _corpus_and_tokenizer(tmp_path):
    """(bertkit executable, environment, corpus file, tokenizer folder) for the CLI runs below."""
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
    return exe, env, corpus, tok


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe",
    [
        ["--preset", "bert-tiny-chinese"],
        # the generator's samples come from uniforms drawn for the global batch: the same in 1 or 2 processes
        ["--recipe", "electra", "--preset", "electra-small-chinese", "--num-hidden-layers", "2", "--hidden-size", "64"],
        ["--recipe", "gpt", "--preset", "gpt2-tiny-chinese"],
        # the permutation orders likewise: drawn for the global batch from the step's seed
        ["--recipe", "xlnet", "--preset", "bert-tiny-chinese"],
    ],
    ids=["bert", "electra", "gpt", "xlnet"],
)
def test_two_processes_follow_one_and_resume_in_one(tmp_path, recipe):
    exe, env, corpus, tok = _corpus_and_tokenizer(tmp_path)

    def args(out, steps=6):
        return [
            "pretrain",
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--tokenizer",
            str(tok),
            *recipe,
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
        trained = ("mlm_loss", "nsp_loss", "rtd_loss", "lm_loss", "plm_loss")  # not rtd_base_rate_loss, a rank's
        return [sum(r.get(k, 0) for k in trained) for r in rows if "step" in r]

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


@pytest.mark.slow
def test_distillation_in_two_processes_follows_one(tmp_path):
    """General distillation runs the pretraining loop: the frozen teacher takes no part in the gradient
    all-reduce, and 2 processes x B/2 follow 1 x B."""
    exe, env, corpus, tok = _corpus_and_tokenizer(tmp_path)
    common = ["--corpus", str(corpus), "--max-seq-length", "32", "--batch-size", "8", "--precision", "fp32"]
    common += ["--lr", "1e-3", "--warmup", "2", "--cache-dir", str(tmp_path / "cache")]
    teacher = [exe, "pretrain", "--out", str(tmp_path / "teacher"), "--tokenizer", str(tok), "--steps", "4"]
    teacher += ["--preset", "bert-tiny-chinese", "--dropout", "0", *common]
    assert subprocess.run(teacher, capture_output=True, env=env, timeout=600).returncode == 0

    def args(out):
        return ["distill", "--teacher", str(tmp_path / "teacher" / "model"), "--out", str(out), "--steps", "4", *common]

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for name, launch in (("one", [exe]), ("two", [*torchrun, "-m", "bertkit.cli"])):
        result = subprocess.run([*launch, *args(tmp_path / name)], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, extra",
    [
        # 29 reviews in micro-batches of 4, two per step: the last micro-batch has one row, so rank 1's is empty
        ("sentiment", ["--max-seq-length", "32", "--grad-accum", "2"]),
        ("peoples-daily-ner", ["--max-seq-length", "16", "--stride", "8", "--crf"]),
    ],
)
def test_finetuning_in_two_processes_follows_one(tmp_path, task, extra):
    from helpers import save_tiny_bert

    from bertkit.finetune.tasks import peoples_daily_ner_task, sentiment_task
    from bertkit.tokenizer import Tokenizer

    lines = [e.text for e in sentiment_task().train[:300]] + [
        "".join(e.words) for e in peoples_daily_ner_task().train[:300]
    ]
    model = save_tiny_bert(tmp_path / "tiny", Tokenizer.train(iter(lines), vocab_size=800, min_frequency=1))
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    args = ["finetune", "--task", task, "--model", str(model), "--max-train-examples", "29"]
    args += ["--max-eval-examples", "12", "--batch-size", "4", "--epochs", "2", "--lr", "3e-3", "--warmup", "2"]
    args += ["--dropout", "0", "--precision", "fp32", "--log-every", "1", *extra]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    for name, launch in (("one", [exe]), ("two", [*torchrun, "bertkit.cli"])):
        result = subprocess.run(
            [*launch, *args, "--out", str(tmp_path / name)], capture_output=True, text=True, env=env, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        if name == "two":
            assert result.stdout.count("seed 0: best epoch") == 1  # rank 0 alone reports

    def run(name):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        weights = load_file(str(tmp_path / name / "model" / "model.safetensors"))
        return summary, [r["loss"] for r in rows if "loss" in r], weights

    (s1, l1, w1), (s2, l2, w2) = run("one"), run("two")
    assert s2["processes"] == 2 and s1["processes"] == 1
    assert l1 == pytest.approx(l2, rel=1e-4) and len(l1) > 2
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    metric = s1["metric"]
    assert s1["test"][metric] == pytest.approx(s2["test"][metric], abs=1e-6)
    assert s1["dev"]["loss"] == pytest.approx(s2["dev"]["loss"], rel=1e-4)
    if "--crf" in extra:
        assert (tmp_path / "two" / "model" / "crf.safetensors").is_file()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent's pid, after the state
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_torchrun_max_restarts_recovers_a_killed_worker_exactly(tmp_path):
    """A worker killed with SIGKILL mid-run: torchrun (--max-restarts 1) restarts both, they resume from the
    last checkpoint, and the run ends with the weights of one that was never interrupted."""
    import signal
    import time

    exe, env, corpus, tok = _corpus_and_tokenizer(tmp_path)
    args = ["pretrain", "--corpus", str(corpus), "--tokenizer", str(tok), "--preset", "bert-tiny-chinese"]
    args += ["--max-seq-length", "128", "--batch-size", "16", "--steps", "40", "--save-every", "8", "--dropout", "0"]
    args += ["--precision", "fp32", "--lr", "1e-3", "--warmup", "2", "--cache-dir", str(tmp_path / "cache"), "--resume"]
    done = subprocess.run([exe, *args, "--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    log = open(tmp_path / "torchrun.log", "w")  # noqa: SIM115 - closed below
    run = subprocess.Popen(
        [*torchrun, "--max-restarts", "1", "-m", "bertkit.cli", *args, "--out", str(tmp_path / "killed")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    first = tmp_path / "killed" / "checkpoints" / "step-00000008"
    deadline = time.monotonic() + 300
    while not first.is_dir() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before its first checkpoint could be interrupted"
    workers = _children(run.pid)  # `python -m torch.distributed.run` is the agent; the workers are its children
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    assert run.wait(timeout=600) == 0, (tmp_path / "torchrun.log").read_text()[-3000:]
    log.close()
    text = (tmp_path / "torchrun.log").read_text()
    assert "SIGKILL" in text or "Signal 9" in text or "exitcode: -9" in text, text[-3000:]  # it did fail once

    whole, killed = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in ("whole", "killed"))
    assert max(float((whole[k] - killed[k]).abs().max()) for k in whole) < 1e-4
    rows = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "step" in r]
    assert steps == sorted(set(steps))  # the resumed run's log has each step once
