"""The notes' road to BERT, measured (docs/results.md, "The lineage"): word2vec → ELMo → GPT → BERT, with XLNet's
permutation LM beside them, on one corpus, one budget and the same downstream tasks:

    .venv/bin/python scripts/lineage_table.py [--minutes 7.5] [--out runs/recipes] [--write-docs]
    make lineage                                   (the same; `make lineage ARGS=--write-docs` fills the docs block)
    .venv/bin/python scripts/lineage_table.py --smoke        (a few steps and examples: the plumbing only)

The rows, and what each reads of a text (seed 003: "从单词到上下文中的单词"):
- word2vec: one static vector per word, whatever its context (skip-gram, the default settings, ~1 minute):
  jieba-word vectors mean-pooled into logistic regression for sentiment; character vectors (each character's and
  its neighbours') into a linear-chain CRF for NER (`bertkit baseline --word2vec`, lineage/w2v_features.py).
  Deterministic, so one run, as the classical baseline.
- ELMo: context from two one-directional LSTM language models, frozen; a learned scalar mix of its layers and a
  small head on top (`bertkit elmo finetune`; only the mix and the head train, so seed 0 chooses between 1e-3
  and 1e-2 on dev, as the Transformers' rows choose theirs: at 1e-3 alone the head of 500 NER sentences stayed
  at "O" everywhere, F1 0.01).
- GPT: a Transformer reading left to right (causal LM, GPT-2's pre-LayerNorm blocks), fine-tuned whole: the last
  token classifies (seed 003's input transformation), every token tags.
- XLNet-style: BERT's blocks trained by permutation LM (two streams, absolute positions), fine-tuned as BERT.
- BERT: MLM + NSP (the reference every interval is against), with random init and the classical baseline.

How, and why:
- Everything but word2vec and ELMo is scripts/compare_recipes.py's machinery and settings, imported from it: the
  same corpus (People's Daily + the training reviews), size (2 x 128), schedule, --minutes of wall-clock
  pretraining per row (timed first, on a quiet machine), the tasks (sentiment with all 13,891 labels and with 500,
  NER on 500 sentences), the fine-tuning rule (seed 0 picks the rate on dev, seeds 1 and 2 reuse it) and the
  intervals (each row's 3-seed mean against each of BERT's seeds, `bertkit compare`, the widest interval shown).
- --out is compare_recipes.py's folder by default: the rows both scripts have (bert, random init, the baseline) are
  the same pieces, computed once by whichever runs first; gpt and xlnet are rows of its ROWS too.
- ELMo gets the same --minutes: 40 timed steps (ELMO/timing), then as many steps as fit (the default biLM, 2 x 256
  LSTMs over characters, batch 32); fine-tuned with 3 seeds (the biLM pretrained once, as every other row), each
  task's epochs and cuts as the Transformers': sentiment at 62 characters (what 64 tokens hold), NER whole
  sentences up to 126 characters (the Transformers read them in 32-token windows).
- word2vec's budget is what it needs (~1 minute of the --minutes), not more: it has converged by then.
- Time: gpt and xlnet ~2 x 15 min (pretraining and 12 fine-tunings each), ELMo ~25 min, word2vec ~5 min, plus
  BERT, random init and the baseline when runs/recipes does not hold them (~25 min): ~1 h 10 min to ~1 h 35 min.
  Rerun to resume: a finished piece (its summary.json) is skipped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

from bertkit.errors import BertkitError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import compare_recipes as recipes  # noqa: E402 - scripts/ is a folder of scripts, not a package
from compare_recipes import Interval, Task, compare, doc_tables, flags, points, run_piece  # noqa: E402

DOCS_TABLE = "lineage"  # the block of docs/results.md that --write-docs fills
TASKS = {name: recipes.TASKS[name] for name in ("sentiment-all", "sentiment-500", "ner")}
TRANSFORMERS = ["gpt", "xlnet", "bert"]  # rows of compare_recipes.ROWS
# The table's rows in the notes' order, with what each reads of a text.
READS = {
    "word2vec": "one vector per word, no context",
    "elmo": "left and right, separately (two LSTM LMs), frozen",
    "gpt": "left only (causal LM)",
    "xlnet": "both sides (permutation LM)",
    "bert": "both sides (MLM + NSP)",
    "random-init": "BERT's shape, no pretraining",
    recipes.BASELINE: "TF-IDF + LR / CRF on characters",
}
W2V_UNIT = {"sentiment-all": "word", "sentiment-500": "word", "ner": "char"}  # jieba words, or characters
ELMO_CHARS = {"sentiment-all": "62", "sentiment-500": "62", "ner": "126"}
ELMO_GRID = ["1e-3", "1e-2"]  # seed 0's rates for the mix and the head, chosen on dev; seeds 1 and 2 reuse it


def word2vec(s: recipes.Settings, name: str, task: Task) -> None:
    """The vectors of the task's unit (trained once per unit), then the features into LR or the CRF."""
    unit = W2V_UNIT[name]
    vectors = s.out / "word2vec" / f"vectors-{unit}"
    train = ["word2vec", "train", "--unit", unit, *flags({"--corpus": recipes.PRETRAIN["--corpus"]})]
    run_piece(vectors, [*train, "--threads", "1", "--seed", "1"], s.out / "timings.jsonl")
    run_piece(
        s.out / "word2vec" / name,
        ["baseline", *flags(task.data), "--word2vec", str(vectors / "vectors.bin"), "--overwrite"],
        s.out / "timings.jsonl",
    )


def elmo_pretrain(s: recipes.Settings) -> dict:
    """40 timed steps, then as many as fit in --minutes (resuming an unfinished run)."""
    base = ["elmo", "train", *flags({"--corpus": recipes.PRETRAIN["--corpus"]})]
    timing = s.out / "elmo" / "timing"
    if timing.exists() and not recipes.done(timing):
        import shutil

        shutil.rmtree(timing)
    run_piece(timing, [*base, "--steps", str(s.timing_steps), "--eval-every", "100000"], s.out / "timings.jsonl")
    rows = [r for r in recipes.read_rows(timing / "metrics.jsonl") if "seconds_per_step" in r]
    seconds = statistics.median(r["seconds_per_step"] for r in rows[1:] or rows)
    steps = recipes.steps_for(seconds, s.minutes, s.min_steps)
    run = s.out / "elmo" / "pretrain"
    every = str(min(500, steps))
    run_piece(
        run,
        [*base, "--steps", str(steps), "--eval-every", every, "--save-every", every, "--resume"],
        s.out / "timings.jsonl",
    )
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return {"steps": steps, "perplexity": summary["held_out"]["perplexity"], "model": str(run / "model")}


def elmo_finetune(s: recipes.Settings, model: str, name: str, task: Task) -> None:
    cut = {k: v for k, v in task.data.items() if k != "--task"}
    epochs = task.finetune["--epochs"]
    args = ["elmo", "finetune", "--model", model, "--task", task.data["--task"], *flags(cut)]
    args += ["--epochs", epochs, "--max-chars", ELMO_CHARS[name]]
    folder = s.out / "elmo" / name
    run_piece(folder / "seed-0", [*args, "--seed", "0", "--lr", *ELMO_GRID], s.out / "timings.jsonl")
    lr = json.loads((folder / "seed-0" / "summary.json").read_text(encoding="utf-8"))["lr"]
    for seed in s.seeds[1:]:
        run_piece(folder / f"seed-{seed}", [*args, "--seed", str(seed), "--lr", f"{lr:g}"], s.out / "timings.jsonl")


def test_score(run: Path) -> float:
    """A run's test score: `bertkit baseline`'s ({metric: score}) or `elmo finetune`'s (the score itself)."""
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return summary["test"] if isinstance(summary["test"], float) else recipes.test_score(run)


def vs_bert(s: recipes.Settings, folder: Path, label: str, name: str) -> dict:
    """A row's scores and intervals (against BERT's seeds, and against the baseline)."""
    cache = s.out / "compare"
    runs = sorted(folder.glob("seed-*")) or [folder]
    scores = [test_score(run) for run in runs]
    bert = [recipes.predictions(s.out / recipes.REFERENCE / name / f"seed-{seed}")[0] for seed in s.seeds]
    intervals = [compare(folder, b, cache / f"{label}.{name}.vs-bert-seed-{i}.txt") for i, b in enumerate(bert)]
    baseline = compare(folder, s.out / "baseline" / name, cache / f"{label}.{name}.vs-baseline.txt")
    return {"scores": scores, "vs_bert": asdict(recipes.widest(intervals)), "vs_baseline": asdict(baseline)}


def run_all(s: recipes.Settings) -> dict:
    for name, task in s.tasks.items():
        recipes.baseline(s, name, task)
    results: dict = {}
    for row in TRANSFORMERS:
        pre = recipes.pretrain(s, row)
        for name, task in s.tasks.items():
            recipes.finetune(s, s.out / row / name, pre["model"], task)
        results[row] = {"pretrain": pre}
    for name, task in s.tasks.items():
        model = results[recipes.REFERENCE]["pretrain"]["model"]
        recipes.finetune(s, s.out / "random-init" / name, model, task, random_init=True)
        word2vec(s, name, task)
    elmo = elmo_pretrain(s)
    for name, task in s.tasks.items():
        elmo_finetune(s, elmo["model"], name, task)
    results = {"word2vec": {}, "elmo": {"pretrain": elmo}, **results, "random-init": {}}
    for row in results:
        folder = s.out / row
        if row in TRANSFORMERS or row == "random-init":
            results[row]["tasks"] = recipes.row_results(s, row)
        else:
            results[row]["tasks"] = {name: vs_bert(s, folder / name, row, name) for name in s.tasks}
    results[recipes.BASELINE] = {"tasks": recipes.baseline_results(s)}
    return results


def pretraining_cell(row: str, result: dict) -> str:
    pre = result.get("pretrain")
    if row == "word2vec":
        return "skip-gram, 5 epochs"
    if pre is None:
        return "—"
    if row == "elmo":
        return f"{pre['steps']:,} steps (perplexity {pre['perplexity']:.0f} per character)"
    return f"{pre['steps']:,} steps"


def table(results: dict, tasks: dict[str, Task]) -> tuple[list[str], list[list[str]]]:
    header = ["row", "reads", "pretraining", *(t.label for t in tasks.values()), "below the baseline on"]
    rows = []
    for row, result in results.items():
        cells = [recipes.cell(result["tasks"][name], task.metric == "accuracy") for name, task in tasks.items()]
        below = "—" if row == recipes.BASELINE else recipes.below_baseline(result["tasks"], tasks)
        rows.append([row, READS[row], pretraining_cell(row, result), *cells, below])
    return header, rows


def reading(results: dict, tasks: dict[str, Task]) -> list[str]:
    """The notes' two claims against the measurements, task by task, in words."""
    lines = []
    for name, task in tasks.items():
        mean = {r: statistics.fmean(results[r]["tasks"][name]["scores"]) for r in results}
        unit = "%" if task.metric == "accuracy" else ""

        def said(row: str, name: str = name, mean: dict = mean, unit: str = unit) -> str:
            i = Interval(**results[row]["tasks"][name]["vs_bert"])
            return f"{row} {100 * mean[row]:.1f}{unit} ({points(i.difference)} [{points(i.low)}, {points(i.high)}])"

        context = "yes" if mean["elmo"] > mean["word2vec"] else "no"
        both = "yes" if mean["bert"] > mean["gpt"] else "no"
        lines.append(
            f"- {task.label} (BERT {100 * mean['bert']:.1f}{unit}). Context beats static vectors? {context}: "
            f"{said('elmo')} against {said('word2vec')}. Both directions beat one? {both}: {said('gpt')}. "
            f"XLNet-style: {said('xlnet')}."
        )
    return lines


def note(s: recipes.Settings, results: dict) -> str:
    return (
        f"{s.minutes:g} minutes of pretraining per row on People's Daily + the training reviews (2 × 128 Transformers; "
        "ELMo's default biLM; word2vec until done, ~1 minute); fine-tuned with 3 seeds as the recipes' table. Each "
        "task cell: the mean test score and, in brackets, the difference from BERT with the widest paired 95% interval "
        "over BERT's 3 seeds (`bertkit compare`); the baseline row's brackets are baseline − BERT.\n\n"
        + "\n".join(reading(results, s.tasks))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=7.5, help="pretraining wall-clock budget per row")
    ap.add_argument("--out", type=Path, default=None, help="default runs/recipes (runs/lineage-smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="a few steps and examples: checks the plumbing")
    doc_tables.add_arguments(ap)
    args = ap.parse_args()
    out = args.out or Path("runs/lineage-smoke" if args.smoke else "runs/recipes")
    if args.smoke:
        s = replace(recipes.smoke_settings(out), rows=TRANSFORMERS)
        s.tasks = {name: s.tasks[name] for name in TASKS}
    else:
        s = recipes.Settings(TRANSFORMERS, args.minutes, out, tasks=dict(TASKS))
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "results.md"
    try:
        if args.smoke and args.write_docs:
            raise BertkitError("--smoke measures nothing worth a docs table; leave out --write-docs")
        recipes.check_rows(s.rows)
        if args.write_docs:
            doc_tables.require_blocks(page, [DOCS_TABLE], command)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    s.out.mkdir(parents=True, exist_ok=True)
    try:
        results = run_all(s)
    except subprocess.CalledProcessError as e:
        print(
            f"error: `{shlex.join(e.cmd)}` failed (exit {e.returncode}); rerun this command to resume", file=sys.stderr
        )
        raise SystemExit(1) from None
    (s.out / "lineage.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    header, rows = table(results, s.tasks)
    text = doc_tables.markdown_table(header, rows) + "\n\n" + note(s, results)
    (s.out / "lineage.md").write_text(text + "\n", encoding="utf-8")
    recipes.plot(results, s.tasks, s.out / "lineage.png")
    print(text)
    print(f"table: {s.out}/lineage.md  figure: {s.out}/lineage.png  timings: {s.out}/timings.jsonl")
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.write_table, page, DOCS_TABLE, header, rows, command, note(s, results))
        (args.docs_dir / "images").mkdir(exist_ok=True)
        import shutil

        shutil.copyfile(s.out / "lineage.png", args.docs_dir / "images" / "lineage.png")


if __name__ == "__main__":
    main()
