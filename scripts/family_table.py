"""The family table (docs/results.md): BERT, ALBERT, RoBERTa and ELECTRA pretrained on the built-in corpus with the same
CPU budget, then fine-tuned on the built-in sentiment and NER tasks with the same settings.

    .venv/bin/python scripts/family_table.py [--minutes 6] [--out runs/family]     (make family)

How the budget is made the same: every recipe is first timed for 40 steps (`seconds_per_step` in its
metrics.jsonl, the first window left out), and then pretrained for as many steps as fit in `--minutes`, so
each row gets the same wall-clock time on this machine and its learning-rate schedule still runs to the end.

Every model is 4 layers x 256 hidden (BERT-Mini's size; ALBERT and ELECTRA with 128-wide embeddings, ELECTRA's
generator a quarter of the width), 128 tokens x 32 sequences per step, lr 5e-4 with 6% warm-up, no dropout,
each family's own recipe otherwise (see `bertkit pretrain --help`, RECIPES in pretrain/setup.py). The corpus is
People's Daily plus the sentiment task's *training* reviews (labels dropped), as in `make demo`.

Fine-tuning is the same for every row and was not tuned per recipe: sentiment on all 13,891 training reviews,
128 tokens, 2 epochs, lr 3e-4; NER on 3,000 training sentences with a CRF, 32-token windows 24 apart, 6 epochs,
lr 1e-3. The best epoch is kept by dev; test is scored once. One more row fine-tunes BERT's architecture from
random weights, and the classical baselines (`bertkit baseline`) stand beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bertkit.pretrain.setup import RECIPES  # the rows: one table row each

BK = str(Path(sys.executable).with_name("bertkit"))
SIZE = ["--num-hidden-layers", "4", "--hidden-size", "256"]
PRETRAIN = [
    "--corpus",
    "peoples-daily",
    "reviews",
    "--vocab-size",
    "8000",
    "--max-seq-length",
    "128",
    "--batch-size",
    "32",
    "--lr",
    "5e-4",
    "--warmup",
    "0.06",
    "--dropout",
    "0",
    "--log-every",
    "10",
]
SENTIMENT = [
    "--task",
    "sentiment",
    "--max-seq-length",
    "128",
    "--epochs",
    "2",
    "--lr",
    "3e-4",
    "--batch-size",
    "32",
    "--warmup",
    "0.1",
    "--dropout",
    "0.1",
]
NER = [
    "--task",
    "peoples-daily-ner",
    "--max-train-examples",
    "3000",
    "--max-seq-length",
    "32",
    "--stride",
    "24",
    "--epochs",
    "6",
    "--crf",
    "--lr",
    "1e-3",
    "--batch-size",
    "32",
    "--warmup",
    "0.1",
    "--dropout",
    "0.1",
]


def bk(*args: str) -> None:
    print("$ bertkit " + " ".join(args), flush=True)
    subprocess.run([BK, *args], check=True)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pretrain(out: Path, recipe: str, minutes: float, cache: Path) -> dict:
    calib = out / f"{recipe}-timing"
    if not (calib / "summary.json").is_file():
        bk(
            "pretrain",
            "--recipe",
            recipe,
            "--out",
            str(calib),
            *SIZE,
            *PRETRAIN,
            "--steps",
            "40",
            "--eval-every",
            "1000",
            "--cache-dir",
            str(cache),
        )
    step_s = statistics.median(r["seconds_per_step"] for r in rows(calib / "metrics.jsonl")[1:] if "eval" not in r)
    steps = max(50, int(minutes * 60 / step_s))
    run = out / f"{recipe}-pretrain"
    if not (run / "summary.json").is_file():
        start = time.perf_counter()
        bk(
            "pretrain",
            "--recipe",
            recipe,
            "--out",
            str(run),
            *SIZE,
            *PRETRAIN,
            "--steps",
            str(steps),
            "--eval-every",
            str(max(100, steps // 5)),
            "--save-every",
            str(max(100, steps // 5)),
            "--cache-dir",
            str(cache),
        )
        (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
    train = [r for r in rows(run / "metrics.jsonl") if "eval" not in r]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "steps": steps,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train[1:]),
        "eval": summary["eval"],
        "model": summary["model"],
    }


def test_score(out: Path, name: str, command: list[str]) -> float:
    """Run `bertkit COMMAND --out OUT/NAME` unless its summary is there; its test accuracy or F1."""
    run = out / name
    if not (run / "summary.json").is_file():
        bk(*command, "--out", str(run), "--overwrite")  # an unfinished run (no summary) is redone
    test = json.loads((run / "summary.json").read_text())["test"]
    return test.get("accuracy", test.get("f1"))


def finetune(out: Path, name: str, model: str, args: list[str], random_init: bool = False) -> float:
    return test_score(out, name, ["finetune", "--model", model, *args, *(["--random-init"] if random_init else [])])


def baseline(out: Path, name: str, args: list[str]) -> float:
    return test_score(out, name, ["baseline", *args])


def parameters(model: str) -> int:
    from bertkit.hf import load_pretrained

    ckpt = load_pretrained(model, tokenizer=False)
    return sum(p.numel() for p in ckpt.encoder.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="pretraining wall-clock budget per recipe")
    ap.add_argument("--out", default="runs/family")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    ap.add_argument("--smoke", action="store_true", help="a check that the script runs: 200 examples, 1 epoch")
    args = ap.parse_args()
    if args.smoke:
        for task in (SENTIMENT, NER):
            task[task.index("--epochs") + 1] = "1"
            task += ["--max-train-examples", "200", "--max-eval-examples", "100"]
    out, cache = Path(args.out), Path("runs/cache")
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for recipe in args.recipes:
        pre = pretrain(out, recipe, args.minutes, cache)
        sentiment = finetune(out, f"{recipe}-sentiment", pre["model"], SENTIMENT)
        ner = finetune(out, f"{recipe}-ner", pre["model"], NER)
        table.append((recipe, parameters(pre["model"]), pre, sentiment, ner))
    bert_model = str(out / "bert-pretrain" / "model")
    random_rows = None
    if Path(bert_model).is_dir():
        random_rows = (
            finetune(out, "random-sentiment", bert_model, SENTIMENT, random_init=True),
            finetune(out, "random-ner", bert_model, NER, random_init=True),
        )
    base = (
        baseline(out, "baseline-sentiment", ["--task", "sentiment"]),
        baseline(out, "baseline-ner", ["--task", "peoples-daily-ner", "--max-train-examples", "3000"]),
    )

    lines = [
        f"same pretraining budget per recipe: {args.minutes:g} minutes on this machine; test splits",
        "| recipe | encoder parameters | steps | tokens/s | held-out at [MASK] | RTD accuracy / recall "
        "| sentiment accuracy | NER entity F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for recipe, n, pre, sentiment, ner in table:
        ev = pre["eval"]
        rtd = f"{ev['rtd_accuracy']:.1%} / {ev['rtd_recall']:.1%}" if "rtd_accuracy" in ev else "—"
        what = "generator's " if RECIPES[recipe].generator_size else ""  # RTD: the MLM is the generator's
        lines.append(
            f"| {recipe} | {n / 1e6:.1f}M | {pre['steps']} | {pre['tokens_per_s']:,.0f} | "
            f"{what}{ev['cloze_accuracy']:.1%} (unigram {ev['unigram_accuracy']:.1%}) | {rtd} | "
            f"{sentiment:.1%} | {ner:.1%} |"
        )
    if random_rows:
        lines.append(f"| BERT, random init (no pretraining) | | | | | | {random_rows[0]:.1%} | {random_rows[1]:.1%} |")
    lines.append(f"| classical baseline (TF-IDF + LogReg; CRF) | | | | | | {base[0]:.1%} | {base[1]:.1%} |")
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
