"""Behaviour pinned number for number: the first 30 steps of every pretraining recipe and the steps of one epoch of
every fine-tuning task kind, as `tests/data/reference_losses.json` recorded them. A change to the engine (how
objectives report losses, how a family is described, how the encoder is opened up) must give the same numbers.

On the machine kind that recorded the file (the CPU's bf16 / AMX flags and the torch version are kept in it) the
numbers must be identical. Other CPUs run other matmul kernels, whose sums round differently in the last bits and
drift over 30 steps: there they must agree to 1e-3 (a wrong change moves them by far more). If a refactor sums
three or more loss terms in another order (the one allowed cause of a last-bit difference), say so where it
happens and record the file anew:

    BERTKIT_WRITE_REFERENCE=1 .venv/bin/python -m pytest tests/test_reference.py
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import pytest
import torch
from helpers import one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli import main

REFERENCE = Path(__file__).parent / "data" / "reference_losses.json"
WRITE = bool(os.environ.get("BERTKIT_WRITE_REFERENCE"))

# Tiny and fp32, with dropout on (its random draws are part of the behaviour), 30 steps each.
PRETRAIN = (
    "--steps 30 --batch-size 8 --max-seq-length 64 --num-hidden-layers 2 --hidden-size 64 --vocab-size 1500 "
    "--precision fp32 --dropout 0.1 --lr 1e-3 --warmup 5 --log-every 1 --eval-every 1000 --save-every 1000 --seed 0"
)
RECIPES = {  # every recipe and masking the pretraining loop runs today
    "bert-nsp": "--recipe bert --objective nsp",
    "bert-sop": "--recipe bert --objective sop",
    "bert-wwm": "--recipe bert --masking wwm",
    "bert-span": "--recipe bert --masking span --objective full",
    "bert-ngram-dynamic": "--recipe bert --masking ngram --dynamic",
    "albert": "--recipe albert",
    "roberta": "--recipe roberta",
    "electra": "--recipe electra",
    "gpt": "--recipe gpt",
    "xlnet": "--recipe xlnet",
}
FINETUNE = "--epochs 1 --batch-size 8 --lr 1e-3 --warmup 2 --precision fp32 --dropout 0.1 --log-every 1 --seeds 0"
TASKS = {  # every task kind fine-tuning runs today, a few steps each
    "classification": "--task sentiment --max-train-examples 48 --max-eval-examples 8 --max-seq-length 32",
    "pairs": "--task classification --train {d}/pairs.csv --text-pair-column text_b --max-seq-length 32",
    "regression": "--task regression --train {d}/scores.csv --max-seq-length 32",
    "tagging": "--task peoples-daily-ner --max-train-examples 48 --max-eval-examples 8 --max-seq-length 32",
    "tagging-crf": "--task peoples-daily-ner --max-train-examples 48 --max-eval-examples 8 --max-seq-length 32 --crf",
    "qa": "--task qa --train {q}/squad_v2_tiny.json --max-seq-length 48 --stride 16",
    "multiple-choice": "--task multiple-choice --train {d}/choices.jsonl --max-seq-length 32",
}
KEPT = re.compile(r"^(step|epoch|lr|grad_norm|loss|.*_loss|.*_accuracy|max_seq_length)$")


def machine() -> dict:
    """What decides the last bits: the CPU's matmul paths and torch's kernels."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    kind = "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "avx2"
    return {"cpu": f"{platform.machine()} {kind}", "torch": torch.__version__}


def rows(run: Path) -> list[dict]:
    """The training rows of a run's metrics.jsonl, without timings."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "step" in row:
            out.append({k: v for k, v in row.items() if KEPT.match(k)})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A corpus of the built-in People's Daily's first 400 lines, small task files, and a tiny model."""
    from bertkit.builtin import peoples_daily_raw_lines
    from bertkit.tokenizer import Tokenizer

    d = tmp_path_factory.mktemp("reference")
    lines = [line for line, _ in zip(peoples_daily_raw_lines(), range(400), strict=False)]
    (d / "corpus.txt").write_text("\n".join(lines) + "\n", "utf-8")
    texts = [line[:20] for line in lines if len(line) > 24][:40]
    pairs = "".join(
        f"{a},{b},{'same' if i % 2 else 'other'}\n" for i, (a, b) in enumerate(zip(texts, texts[::-1], strict=True))
    )
    (d / "pairs.csv").write_text("text,text_b,label\n" + pairs, "utf-8")
    (d / "scores.csv").write_text("text,label\n" + "".join(f"{t},{sum(map(ord, t)) % 7 / 2}\n" for t in texts), "utf-8")
    choices = [
        {"context": t, "question": "哪个？", "choices": [t[:4], t[4:8], t[8:12]], "label": i % 3}
        for i, t in enumerate(texts)
    ]
    (d / "choices.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in choices), "utf-8")
    save_tiny_bert(d / "model", Tokenizer.train(iter(lines), vocab_size=1500, min_frequency=1), 64)
    return d


def recorded() -> dict:
    return json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {"runs": {}}


def check(name: str, got: list[dict]) -> None:
    reference = recorded()
    if WRITE:
        reference["runs"][name] = got
        reference.update(machine())
        REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
        return
    want = reference["runs"][name]
    assert [r["step"] for r in got] == [r["step"] for r in want], name
    same_machine = {k: reference.get(k) for k in ("cpu", "torch")} == machine()
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), (name, g["step"], sorted(g), sorted(w))
        if same_machine:
            assert g == w, (name, g["step"])
        else:
            assert g == pytest.approx(w, rel=1e-3, abs=1e-5), (name, g["step"])


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_pretraining_recipes_give_the_recorded_losses(data, tmp_path, name):
    argv = f"pretrain --out {tmp_path}/run --corpus {data}/corpus.txt --cache-dir {data}/cache {RECIPES[name]} "
    assert main((argv + PRETRAIN).split()) == 0
    check(f"pretrain {name}", rows(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_finetuning_task_kinds_give_the_recorded_losses(data, tmp_path, name):
    task = TASKS[name].format(d=data, q=Path(__file__).parent / "data")
    argv = f"finetune --model {data}/model --out {tmp_path}/run {task} {FINETUNE}"
    assert main(argv.split()) == 0
    check(f"finetune {name}", rows(tmp_path / "run"))
