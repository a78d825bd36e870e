"""The notes' comparison of pretraining recipes, as one command (docs/results.md, "Recipes compared"):

    .venv/bin/python scripts/compare_recipes.py [--minutes 7.5] [--out runs/recipes] [--rows bert ...] [--write-docs]
    make recipes                                   (the same; `make recipes ARGS=--write-docs` fills the docs block)
    .venv/bin/python scripts/compare_recipes.py --smoke      (2 rows, a few steps and examples: the plumbing only)

Every row of ROWS (a name and its `bertkit pretrain` flags) is pretrained at the same size, on the same corpus,
for the same wall-clock time, then fine-tuned on the demo's four tasks with the same settings and 3 seeds; a
random-init row (BERT's architecture, random weights) and the classical baseline (`bertkit baseline`) stand
beside them. Each task's cell is the 3-seed mean and its paired 95% interval against the BERT row. Everything
lands in OUT: a folder per row, table.md, recipes.png (the intervals), results.json, timings.jsonl.

Resumable recipe by recipe: a piece whose folder holds its summary.json is skipped on a rerun; an unfinished
pretraining continues from its last checkpoint (--resume, every 500 steps); an unfinished fine-tuning or
baseline run is redone (--overwrite). A row whose recipe is not in RECIPES (pretrain/setup.py) stops the script
before anything runs, naming the row.

The plan, and why (AMD EPYC with AVX-512 BF16, 2 cores, no other work on the machine):
- Size: BERT-Tiny, 2 layers x 128 for every row (`--num-hidden-layers 2 --hidden-size 128`; ALBERT's
  embeddings 128 wide, ELECTRA's generator 32), each recipe's own objective, masking, data and tokenizer
  otherwise. BERT-Mini (4 x 256) costs ~3x per token in pretraining and fine-tuning alike: 9 rows of it
  cannot both reach the 25% target and fine-tune 3 seeds on 4 tasks within 2.5 hours.
- Pretraining: the demo's recipe (scripts/demo.sh): People's Daily + the sentiment task's training reviews,
  vocabulary 8,000, batch 64, `--phases 32:0.9 64:0.1`, lr 1e-3 with 100 warm-up steps, no dropout. Rows that
  mask entities (ernie, ernie-2.0) get `--entities OUT/entities.txt`, People's Daily's tagged entities written
  out (`write_entities`): the built-in tags cover People's Daily only, and this corpus has the reviews too.
- The same CPU budget is the same wall-clock time: each row first runs 40 steps (`ROW/timing`, 20 at 32 tokens
  and 20 at 64), and then as many steps as its median seconds per step (weighted 0.9 / 0.1 like the phases)
  fit in --minutes; so steps differ by row, and the table gives them with tokens/s. Under other load the
  timings (and so the steps) change: run it on a quiet machine.
- The budget, 7.5 minutes a row (~10,000 steps of BERT at ~0.044 s a step, the demo's speed on a quiet
  machine): BERT (MLM + NSP) at these settings for 12,000 steps stood at 27.7% held-out at [MASK] at step
  6,000 and 31.8% at 10,000 (32 tokens), 32.0% at the end at 64 tokens (unigram 5.6%); a 6,000-step run ended
  at 19.7% at 64 tokens, 600 steps after the length switch. So ~10,000 steps clear the issue's 25%; the
  table's note says whether the run did, and --minutes raises the budget (each minute costs 9 in all).
- Fine-tuning, the same for every row, as `make demo` runs the four tasks: sentiment at 64 tokens with all
  13,891 labels (1 epoch) and with 500 (15 epochs); NER and word segmentation on 500 training sentences, 600
  dev and 600 test, CRF, 32-token windows 24 apart, 6 epochs; batch 32, warm-up 10%, dropout 0.1; the best
  epoch by dev, test scored once.
- Learning rate, the rule: seed 0 runs `bertkit finetune --lr 3e-4 1e-3`, which trains both, keeps the better
  on dev and scores only that one on test (ROW/TASK/seed-0/lr-X); seeds 1 and 2 reuse that rate
  (ROW/TASK/seed-N): 4 runs per row and task instead of 6 (both rates for every seed). finetune's default grid
  adds 1e-4, which no dev grid at this size chose (sentiment 77.2 / 81.9 / 82.4% dev for 1e-4 / 3e-4 / 1e-3;
  tagging chose 1e-3 among 3e-4 1e-3 3e-3): a fifth run per task for nothing.
- Intervals: `bertkit compare ROW/TASK BERT-SEED-RUN` gives the row's 3-seed mean against one BERT run, paired
  on the test examples; it is run against each of BERT's 3 seeds, and the cell shows the mean difference
  (= the row's mean - BERT's mean) with the widest of the three intervals (so BERT's own seed spread is inside
  it). An interval that holds 0 is a tie as far as this test set can tell. Against the baseline (one run),
  one `bertkit compare ROW/TASK baseline/TASK` per cell: "below the baseline" where its interval is below 0.
- Time, from the demo's measurements (BERT-Tiny): pretraining 9 x (7.5 min + ~1 min for the timing run,
  start-up, evaluation and building the masked data, which is outside the per-row budget and longest for
  jieba's words and ERNIE's stages) = ~77 min; fine-tuning ~20 s a run (sentiment 1 epoch ~20 s, 500 labels
  x 15 epochs ~25 s with its dev scoring, each tagging task ~20 s) x 4 tasks x 4 runs = ~5.5 min a row, x 10
  rows (9 + random init) = 55 min; baselines ~1.5 min; `bertkit compare` ~150 calls of ~2.5 s = 7 min. In
  all ~2 h 20 min.
- --smoke: rows bert and roberta, 20 pretraining steps, 64 training and 64 dev/test examples, 1 epoch: the
  same pieces, commands, table and figure (13 minutes on a busy machine, mostly process start-up); its figures
  mean nothing.
"""

import argparse
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.pretrain.setup import RECIPES  # the recipes a row may name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import doc_tables  # noqa: E402 - benchmarks/ is a folder of scripts, not a package

BK = str(Path(sys.executable).with_name("bertkit"))
DOCS_TABLE = "recipes"  # the block of docs/results.md that --write-docs fills

# The rows: name -> `bertkit pretrain` flags. "bert" is the reference every other row is compared with.
ROWS = {
    "bert": ["--recipe", "bert"],  # MLM + NSP
    "bert-mlm": ["--recipe", "bert", "--objective", "full"],  # MLM alone on full sentences
    "bert-wwm": ["--recipe", "bert", "--masking", "wwm"],  # whole-word masking (jieba words)
    "ernie": ["--recipe", "ernie"],
    "spanbert": ["--recipe", "spanbert"],
    "roberta": ["--recipe", "roberta"],
    "albert": ["--recipe", "albert"],
    "electra": ["--recipe", "electra"],
    "ernie-2.0": ["--recipe", "ernie-2.0"],
    "gpt": ["--recipe", "gpt"],  # left to right (causal LM); also the lineage table's (scripts/lineage_table.py)
    "xlnet": ["--recipe", "xlnet"],  # permutation LM on BERT's blocks
}
REFERENCE = "bert"
BASELINE = "classical baseline"  # the table's row of `bertkit baseline`
SMOKE_ROWS = ["bert", "roberta"]
SIZE = ["--num-hidden-layers", "2", "--hidden-size", "128"]
PRETRAIN = {
    "--corpus": "peoples-daily reviews",
    "--vocab-size": "8000",
    "--phases": "32:0.9 64:0.1",
    "--batch-size": "64",
    "--lr": "1e-3",
    "--warmup": "100",
    "--dropout": "0",
    "--chunk-tokens": "0",
    "--cache-dir": "runs/cache",
}
PHASE_WEIGHTS = {32: 0.9, 64: 0.1}  # the share of steps at each length: weights the timed seconds per step
TIMING_STEPS = 40
SEEDS = (0, 1, 2)
FINETUNE = {"--batch-size": "32", "--warmup": "0.1", "--dropout": "0.1"}
GRID = ["3e-4", "1e-3"]  # seed 0's learning rates, chosen between on dev
TAGGING = {"--max-seq-length": "32", "--stride": "24", "--epochs": "6", "--crf": ""}


@dataclass(frozen=True)
class Task:
    """One downstream task: its label in the table, its metric, the flags `baseline` and `finetune` share, and
    finetune's own."""

    label: str
    metric: str  # "accuracy" (shown in %), or an F1 (in points)
    data: dict[str, str]
    finetune: dict[str, str] = field(default_factory=dict)


TASKS = {
    "sentiment-all": Task(
        "sentiment, 13,891 labels", "accuracy", {"--task": "sentiment"}, {"--max-seq-length": "64", "--epochs": "1"}
    ),
    "sentiment-500": Task(
        "sentiment, 500 labels",
        "accuracy",
        {"--task": "sentiment", "--max-train-examples": "500"},
        {"--max-seq-length": "64", "--epochs": "15"},
    ),
    "ner": Task(
        "NER, entity F1",
        "entity F1",
        {"--task": "peoples-daily-ner", "--max-train-examples": "500", "--max-eval-examples": "600"},
        TAGGING,
    ),
    "cws": Task(
        "segmentation, word F1",
        "word F1",
        {"--task": "peoples-daily-cws", "--max-train-examples": "500", "--max-eval-examples": "600"},
        TAGGING,
    ),
}


@dataclass
class Settings:
    """What one invocation runs: the rows, the budget, and the smoke test's cuts."""

    rows: list[str]
    minutes: float
    out: Path
    min_steps: int = 200
    grid: list[str] = field(default_factory=lambda: list(GRID))
    tasks: dict[str, Task] = field(default_factory=lambda: dict(TASKS))
    timing_steps: int = TIMING_STEPS
    seeds: tuple[int, ...] = SEEDS


def smoke_settings(out: Path) -> Settings:
    """The smoke test: every piece and command of the real run, on a few steps and examples."""
    cut = {"--max-train-examples": "64", "--max-eval-examples": "64"}
    tasks = {name: Task(t.label, t.metric, t.data | cut, t.finetune | {"--epochs": "1"}) for name, t in TASKS.items()}
    return Settings(SMOKE_ROWS, 0.0, out, min_steps=20, tasks=tasks, timing_steps=10)


def flags(options: dict[str, str]) -> list[str]:
    """{"--corpus": "a b", "--crf": ""} -> ["--corpus", "a", "b", "--crf"]."""
    return [word for name, value in options.items() for word in [name, *value.split()]]


def check_rows(rows: list[str]) -> None:
    """Every row named, every row's recipe in RECIPES, and the reference row among them: before anything runs."""
    for name in rows:
        if name not in ROWS:
            raise BertkitError(f"--rows {name!r}: not a row of ROWS in scripts/compare_recipes.py ({', '.join(ROWS)})")
        recipe = ROWS[name][ROWS[name].index("--recipe") + 1]
        if recipe not in RECIPES:
            raise BertkitError(
                f"row {name!r}: recipe {recipe!r} is not in RECIPES (src/bertkit/pretrain/setup.py: "
                f"{', '.join(RECIPES)}); add the recipe, or leave the row out with --rows"
            )
    if REFERENCE not in rows:
        raise BertkitError(f"--rows: every row is compared with {REFERENCE!r}; include it")


# --- running the pieces ------------------------------------------------------------------------------------------


def bk(*args: str) -> None:
    print("$ bertkit " + shlex.join(args), flush=True)
    subprocess.run([BK, *args], check=True)


def done(folder: Path) -> bool:
    """A finished piece: its summary.json is written last, atomically, by every bertkit command used here."""
    return (folder / "summary.json").is_file()


def run_piece(folder: Path, args: list[str], log: Path) -> bool:
    """`bertkit ARGS --out FOLDER` unless it is done; its wall-clock seconds go to LOG. False if skipped."""
    if done(folder):
        return False
    start = time.perf_counter()
    bk(*args, "--out", str(folder))
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"piece": str(folder), "seconds": round(time.perf_counter() - start, 1)}) + "\n")
    return True


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def seconds_per_step(metrics: list[dict], weights: dict[int, float] = PHASE_WEIGHTS) -> float:
    """The timed steps' median seconds per step at each length, weighted by the phases' shares (the first logged
    row of each length left out: it holds the start-up)."""
    train = [r for r in metrics if "eval" not in r]
    total = 0.0
    for length, weight in weights.items():
        times = [r["seconds_per_step"] for r in train if r.get("max_seq_length") == length][1:]
        if not times:
            raise BertkitError(f"the timing run logged no steps at {length} tokens after its first row; rerun it")
        total += weight * statistics.median(times)
    return total


def steps_for(step_seconds: float, minutes: float, min_steps: int) -> int:
    return max(min_steps, int(minutes * 60 / step_seconds))


def masks_entities(row_flags: list[str]) -> bool:
    """Whether a row masks entities (ERNIE's entity unit), as its --masking flag or else its recipe says."""
    if "--masking" in row_flags:
        return row_flags[row_flags.index("--masking") + 1] == "ernie-entity"
    return "ernie-entity" in RECIPES[row_flags[row_flags.index("--recipe") + 1]].units


def write_entities(path: Path) -> None:
    """The built-in People's Daily's entities (its nr / ns / nt tags), one a line: the built-in tags cover People's
    Daily alone, and the corpus here has the reviews too, so entity masking gets them as an --entities file."""
    from bertkit.builtin import peoples_daily_tagged
    from bertkit.pretrain.shards import tagged_entities

    if not path.is_file():
        path.write_text("\n".join(sorted(tagged_entities(peoples_daily_tagged()))) + "\n", encoding="utf-8")


def pretrain(s: Settings, row: str) -> dict:
    """Time the row, then pretrain it for --minutes (resuming an unfinished run); its figures for the table."""
    base = ["pretrain", *ROWS[row], *SIZE, *flags(PRETRAIN)]
    if masks_entities(ROWS[row]):
        write_entities(s.out / "entities.txt")
        base += ["--entities", str(s.out / "entities.txt")]
    timing = s.out / row / "timing"
    if timing.exists() and not done(timing):
        shutil.rmtree(timing)  # an interrupted timing run is redone whole: its seconds must be one run's
    timing_flags = ["--phases", "32:0.5", "64:0.5", "--steps", str(s.timing_steps), "--log-every", "2"]
    run_piece(
        timing, [*base, *timing_flags, "--eval-every", "100000", "--save-every", "100000"], s.out / "timings.jsonl"
    )
    steps = steps_for(seconds_per_step(read_rows(timing / "metrics.jsonl")), s.minutes, s.min_steps)
    run = s.out / row / "pretrain"
    every = str(min(500, steps))
    run_piece(
        run,
        [*base, "--steps", str(steps), "--eval-every", every, "--save-every", every, "--log-every", "20", "--resume"],
        s.out / "timings.jsonl",
    )
    return pretrain_figures(run)


def pretrain_figures(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    train = [r for r in read_rows(run / "metrics.jsonl") if "eval" not in r]
    return {
        "steps": summary["steps"],
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train[1:] or train),
        "cloze_accuracy": summary["eval"].get("cloze_accuracy"),
        "unigram_accuracy": summary["eval"].get("unigram_accuracy"),
        "model": summary["model"],
        "generator": "generator" in summary,  # ELECTRA: the [MASK] figure is its generator's
    }


def finetune(s: Settings, folder: Path, model: str, task: Task, random_init: bool = False) -> None:
    """Seed 0 chooses the learning rate among GRID on dev; seeds 1 and 2 reuse it. FOLDER/seed-N each."""
    args = ["finetune", "--model", model, *flags(task.data), *flags(task.finetune), *flags(FINETUNE), "--overwrite"]
    args += ["--random-init"] if random_init else []
    log = s.out / "timings.jsonl"
    run_piece(folder / "seed-0", [*args, "--seeds", "0", "--lr", *s.grid], log)
    lr = json.loads((folder / "seed-0" / "summary.json").read_text(encoding="utf-8"))["lr"]
    for seed in s.seeds[1:]:
        run_piece(folder / f"seed-{seed}", [*args, "--seeds", str(seed), "--lr", f"{lr:g}"], log)


def baseline(s: Settings, name: str, task: Task) -> None:
    run_piece(s.out / "baseline" / name, ["baseline", *flags(task.data), "--overwrite"], s.out / "timings.jsonl")


# --- paired intervals (`bertkit compare`) -----------------------------------------------------------------------

# One result line of `bertkit compare`: the run's name, A, B, A - B, [low, high] and McNemar's p (or —).
COMPARE_LINE = re.compile(
    r"^(?P<name>.+?)\s+(?P<a>-?\d+\.\d+)%\s+(?P<b>-?\d+\.\d+)%\s+(?P<difference>[+-]\d+\.\d+)%\s+"
    r"\[\s*(?P<low>[+-]\d+\.\d+)%,\s*(?P<high>[+-]\d+\.\d+)%\]\s+(?P<p>\S+)$"
)


@dataclass(frozen=True)
class Interval:
    """A - B and its paired 95% interval, as fractions (0.012 = 1.2 points)."""

    difference: float
    low: float
    high: float

    def negated(self) -> "Interval":  # B - A
        return Interval(-self.difference, -self.high, -self.low)

    def holds_zero(self) -> bool:
        return self.low <= 0 <= self.high


def parse_compare(text: str) -> Interval:
    """The last result line of `bertkit compare`'s output: the mean of A's runs when A has several, else its one
    run. An output without one is an error naming the first lines."""
    found = [m for m in map(COMPARE_LINE.match, text.splitlines()) if m]
    if not found:
        raise BertkitError("bertkit compare printed no result line: " + " / ".join(text.splitlines()[:3]))
    m = found[-1]
    return Interval(float(m["difference"]) / 100, float(m["low"]) / 100, float(m["high"]) / 100)


def widest(intervals: list[Interval]) -> Interval:
    """A's mean against each of B's seeds -> A's mean - B's mean, in the widest interval of the lot."""
    return Interval(
        statistics.fmean(i.difference for i in intervals),
        min(i.low for i in intervals),
        max(i.high for i in intervals),
    )


def predictions(folder: Path) -> list[Path]:
    return sorted(folder.rglob("test_predictions.jsonl"))


def compare(a: Path, b: Path, cache: Path) -> Interval:
    """`bertkit compare A B`, its output kept in CACHE and reused while no prediction file is newer."""
    newest = max(p.stat().st_mtime for p in [*predictions(a), *([b] if b.is_file() else predictions(b))])
    if not cache.is_file() or cache.stat().st_mtime < newest:
        print(f"$ bertkit compare {a} {b}", flush=True)
        out = subprocess.run([BK, "compare", str(a), str(b)], check=True, capture_output=True, text=True).stdout
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(out, encoding="utf-8")
    return parse_compare(cache.read_text(encoding="utf-8"))


def task_scores(folder: Path) -> list[float]:
    """The test score of each seed's run under FOLDER (seed-0's from its chosen learning rate)."""
    return [test_score(folder / f"seed-{seed}") for seed in SEEDS]


def test_score(run: Path) -> float:
    """A finished run's test score: its metric, or the mean of a learning-rate grid's chosen runs."""
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    test = summary["test"]
    return test["mean"] if "mean" in test else test[summary["metric"]]


def row_results(s: Settings, row: str) -> dict:
    """A row's tasks: the seeds' test scores, and the intervals against BERT (not for BERT) and the baseline."""
    results = {}
    for name in s.tasks:
        folder = s.out / row / name
        cache = s.out / "compare"
        against = {"scores": task_scores(folder)}
        if row != REFERENCE:
            bert = [predictions(s.out / REFERENCE / name / f"seed-{seed}") for seed in SEEDS]
            vs_bert = [compare(folder, b[0], cache / f"{row}.{name}.vs-bert-seed-{i}.txt") for i, b in enumerate(bert)]
            against["vs_bert"] = asdict(widest(vs_bert))
        baseline_run = s.out / "baseline" / name
        against["vs_baseline"] = asdict(compare(folder, baseline_run, cache / f"{row}.{name}.vs-baseline.txt"))
        results[name] = against
    return results


def baseline_results(s: Settings) -> dict:
    """The baseline's test scores, and BERT's mean against it turned round (baseline - BERT)."""
    results = {}
    for name in s.tasks:
        vs = compare(
            s.out / REFERENCE / name, s.out / "baseline" / name, s.out / "compare" / f"bert.{name}.vs-baseline.txt"
        )
        results[name] = {"scores": [test_score(s.out / "baseline" / name)], "vs_bert": asdict(vs.negated())}
    return results


# --- the table and the figure -----------------------------------------------------------------------------------


def points(x: float) -> str:
    return f"{100 * x:+.1f}".replace("-", "−")


def cell(result: dict, accuracy: bool) -> str:
    """'82.1% (−0.8 [−2.0, +0.4])': the mean test score, and the difference from BERT with its interval."""
    mean = 100 * statistics.fmean(result["scores"])
    score = f"{mean:.1f}%" if accuracy else f"{mean:.1f}"
    if "vs_bert" not in result:
        return score
    i = Interval(**result["vs_bert"])
    return f"{score} ({points(i.difference)} [{points(i.low)}, {points(i.high)}])"


def below_baseline(results: dict, tasks: dict[str, Task]) -> str:
    """The tasks on which the row's whole interval against the baseline lies below 0."""
    lost = [task.label for name, task in tasks.items() if Interval(**results[name]["vs_baseline"]).high < 0]
    return "all" if lost and len(lost) == len(tasks) else "; ".join(lost) or "none"


HEADER = ["row", "pretraining steps", "tokens/s", "held-out at [MASK] (unigram)"]


def table(results: dict, tasks: dict[str, Task]) -> tuple[list[str], list[list[str]]]:
    """The Markdown table's header and rows from results.json's form: {row: {"pretrain": {...}, "tasks": {...}}}."""
    header = [*HEADER, *(t.label for t in tasks.values()), "below the baseline on"]
    rows = []
    for row, result in results.items():
        first = [row, "—", "—", "—"]
        if pre := result.get("pretrain"):
            cloze = "—"
            if pre["cloze_accuracy"] is not None:
                what = "generator's " if pre["generator"] else ""
                cloze = f"{what}{pre['cloze_accuracy']:.1%} ({pre['unigram_accuracy']:.1%})"
            first = [row, f"{pre['steps']:,}", f"{pre['tokens_per_s']:,.0f}", cloze]
        cells = [cell(result["tasks"][name], task.metric == "accuracy") for name, task in tasks.items()]
        last = "—" if row == BASELINE else below_baseline(result["tasks"], tasks)
        rows.append([*first, *cells, last])
    return header, rows


def plot(results: dict, tasks: dict[str, Task], png: Path) -> None:
    """One panel per task: each row's difference from BERT (3-seed means) with its interval, 0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n != REFERENCE]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1.5, 0.42 * len(names) + 1.6), sharey=True)
    for ax, (task, spec) in zip(axes, tasks.items(), strict=True):
        for y, name in enumerate(names):
            r = results[name]["tasks"][task]
            if "vs_bert" not in r:
                continue
            i = Interval(**r["vs_bert"])
            color = "grey" if i.holds_zero() else ("tab:green" if i.low > 0 else "tab:red")
            ax.errorbar(
                100 * i.difference,
                y,
                xerr=[[100 * (i.difference - i.low)], [100 * (i.high - i.difference)]],
                fmt="s" if name == BASELINE else "o",
                color=color,
                capsize=3,
            )
        bert = 100 * statistics.fmean(results[REFERENCE]["tasks"][task]["scores"])
        ax.axvline(0, color="black", lw=1)
        ax.set_title(f"{spec.label}\n(BERT {bert:.1f}{'%' if spec.metric == 'accuracy' else ''})", fontsize=9)
        ax.set_xlabel("difference from BERT, points")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle(
        "test split, mean of 3 fine-tuning seeds; bars: widest paired 95% interval against BERT's seeds "
        "(grey: holds 0)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def verdict(results: dict, tasks: dict[str, Task]) -> list[str]:
    """Per task, in words: the best pretrained row, its margin over BERT and whether the interval holds 0, and
    the rows whose interval against the classical baseline lies below 0."""
    pretrained = [r for r, result in results.items() if "pretrain" in result]
    lines = []
    for name, task in tasks.items():
        mean = {r: statistics.fmean(results[r]["tasks"][name]["scores"]) for r in pretrained}
        best = max(pretrained, key=mean.get)
        unit = "%" if task.metric == "accuracy" else ""
        if best == REFERENCE:
            said = f"BERT itself is best ({100 * mean[best]:.1f}{unit})"
        else:
            i = Interval(**results[best]["tasks"][name]["vs_bert"])
            noise = "inside the noise" if i.holds_zero() else "clear of 0"
            said = (
                f"{best} is best, {100 * mean[best]:.1f}{unit}, {points(i.difference)} over BERT "
                f"[{points(i.low)}, {points(i.high)}]: {noise}"
            )
        if "random-init" in results:  # does pretraining pay at all?
            i = Interval(**results["random-init"]["tasks"][name]["vs_bert"])
            said += f" (random init {points(i.difference)} against BERT [{points(i.low)}, {points(i.high)}])"
        lost = [r for r in results if r != BASELINE and Interval(**results[r]["tasks"][name]["vs_baseline"]).high < 0]
        below = "every row" if len(lost) == len(results) - 1 else ", ".join(lost) or "no row"
        lines.append(f"- {task.label}: {said}; below the classical baseline: {below}.")
    return lines


def note(s: Settings, results: dict) -> str:
    bert = results[REFERENCE]["pretrain"]
    rows = "; ".join(f"{name}: `{shlex.join(ROWS[name])}`" for name in s.rows)
    target = "reached" if (bert["cloze_accuracy"] or 0) >= 0.25 else "NOT reached (raise --minutes)"
    return (
        f"{s.minutes:g} minutes of pretraining per row (2 × 128, the demo's schedule); BERT's held-out accuracy at "
        f"[MASK] {bert['cloze_accuracy']:.1%}, the 25% target {target}. Rows: {rows}. Each task cell: the mean test "
        "score of 3 fine-tuning seeds (lr chosen on dev by seed 0) and, in brackets, the difference from BERT with "
        "the widest paired 95% interval over BERT's 3 seeds (`bertkit compare`); the baseline row's brackets are "
        'baseline − BERT. "Below the baseline": the row\'s interval against the baseline lies below 0.\n\n'
        + "\n".join(verdict(results, s.tasks))
    )


# --- the run ------------------------------------------------------------------------------------------------------


def run_all(s: Settings) -> dict:
    for name, task in s.tasks.items():
        baseline(s, name, task)
    results = {}
    for row in s.rows:
        pre = pretrain(s, row)
        for name, task in s.tasks.items():
            finetune(s, s.out / row / name, pre["model"], task)
        results[row] = {"pretrain": pre}
    for name, task in s.tasks.items():
        finetune(s, s.out / "random-init" / name, results[REFERENCE]["pretrain"]["model"], task, random_init=True)
    for row in [*s.rows, "random-init"]:
        results.setdefault(row, {})["tasks"] = row_results(s, row)
    results[BASELINE] = {"tasks": baseline_results(s)}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=7.5, help="pretraining wall-clock budget per row")
    ap.add_argument("--out", type=Path, default=None, help="default runs/recipes (runs/recipes-smoke with --smoke)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows of ROWS to run ({', '.join(ROWS)})")
    ap.add_argument("--smoke", action="store_true", help="2 rows, a few steps and examples: checks the plumbing")
    doc_tables.add_arguments(ap)
    args = ap.parse_args()
    out = args.out or Path("runs/recipes-smoke" if args.smoke else "runs/recipes")
    s = smoke_settings(out) if args.smoke else Settings(args.rows, args.minutes, out)
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "results.md"
    try:
        if args.smoke and args.write_docs:
            raise BertkitError("--smoke measures nothing worth a docs table; leave out --write-docs")
        check_rows(s.rows)
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
    (s.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    header, rows = table(results, s.tasks)
    text = doc_tables.markdown_table(header, rows) + "\n\n" + note(s, results)
    (s.out / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(results, s.tasks, s.out / "recipes.png")
    print(text)
    print(f"table: {s.out}/table.md  figure: {s.out}/recipes.png  timings: {s.out}/timings.jsonl")
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.write_table, page, DOCS_TABLE, header, rows, command, note(s, results))


if __name__ == "__main__":
    main()
