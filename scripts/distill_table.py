"""The distillation results table, as one command (docs/distillation.md, "Results"):

    .venv/bin/python scripts/distill_table.py [--teacher DIR] [--minutes 12] [--out runs/distill] [--write-docs]
    make distill                                   (the same; `make distill ARGS=--write-docs` fills the docs block)
    .venv/bin/python scripts/distill_table.py --smoke        (1 seed, a few steps and examples: the plumbing only)

A teacher, a DistilBERT student and a TinyBERT student made from it by general distillation, and the same two
student sizes pretrained without distillation for the same wall-clock time, are fine-tuned on the built-in
tasks with 3 seeds; each row gets its parameters, `bertkit embed` texts/s, fine-tuning seconds per step, test
scores, and `bertkit compare` intervals against the teacher and against the same size without distillation.
Everything lands in OUT: a folder per model and row, table.md, distill.png (the intervals), results.json,
timings.jsonl. The pieces, the fine-tuning rule (seed 0 picks the rate among GRID on dev, seeds 1 and 2 reuse
it) and the intervals are scripts/compare_recipes.py's, imported from it.

Resumable piece by piece, as compare_recipes.py: a piece whose folder holds its summary.json is skipped on a
rerun; an unfinished distillation or pretraining continues from its last checkpoint (--resume); an unfinished
fine-tuning is redone (--overwrite).

The plan, and why (AMD EPYC with AVX-512 BF16, 2 cores, no other work on the machine):
- The teacher: --teacher DIR, or by default the one-hour model, runs/pretrain-zh/model (BERT-Mini 4 x 256,
  `make pretrain-zh`, 46 minutes, outside the budget below); without it the script first runs
  scripts/pretrain_zh.sh itself (that recipe, into runs/pretrain-zh, resumed if unfinished: +46 minutes). BERT-
  Mini rather than the demo's BERT-Tiny: a 2-layer teacher leaves DistilBERT one layer and TinyBERT no
  deeper-than-wide student to be; BERT-Mini is the largest model this machine pretrains in an hour.
- The students (sizes from the teacher's config, `student_sizes`): DistilBERT, half the teacher's layers (2 of
  4, copied from it) at its width; TinyBERT, 4 layers at half the width (4 x 128, the teacher's 4 heads). The
  undistilled students are `bertkit pretrain` at the same sizes (BERT-Mini's family, the teacher's vocabulary,
  pretrain_zh's MLM-on-full-sentences, dynamic masking and lr 5e-4; 4 x 128 gets 2 heads of 64, one per 64 as
  `--hidden-size` gives, the same parameters and FLOPs as TinyBERT's 4 of 32).
- The same budget is the same wall-clock time, --minutes (12) per piece, the teacher's forward passes included
  in the distillations' (they are part of what distillation costs): each of the 4 pieces runs 40 timed steps
  (PIECE/timing), then as many steps as their median seconds per step fit. All four read the teacher's corpus
  (People's Daily + the training reviews) at 128 tokens (distill's default; the tasks read 64 and 32), batch
  64, lr 5e-4, warm-up 6%. At the one-hour model's 12.5k tokens/s, a distillation step of the 2 x 256 student
  (its forward and backward, half the teacher's, plus the teacher's forward, a third) costs ~0.8 of a teacher
  step: ~1,300 steps of 8,192 tokens in 12 minutes (~4 passes over the 2.8M-token corpus); the undistilled
  2 x 256 gets ~1.7x the steps in the same time.
- Fine-tuning, every row, as compare_recipes.py (TASKS, FINETUNE): sentiment at 64 tokens with all 13,891 labels
  (1 epoch) and with 500 (15 epochs), NER on 500 sentences (CRF, 32-token windows, 6 epochs); 3 seeds.
  Distilled students both ways, as each paper did: plain `bertkit finetune` (DistilBERT's GLUE recipe), and
  `bertkit distill --task` from the teacher's fine-tuned seed-0 model, TinyBERT's two stages (3 intermediate
  epochs for tinybert), at the rate the student's own plain fine-tuning chose on dev: which of the two pays,
  and whether task distillation pays at all, is itself a result. The undistilled students: plain fine-tuning.
- Speed: `bertkit embed` (fp32, its default, the same on every CPU) on the first 1,000 test reviews of the
  sentiment task, in 3 rounds that alternate between the models as benchmarks/bench_embed.py does (the median
  texts/s); in-domain Chinese text, where bench_embed's English half would be split into characters by this
  8,000-piece Chinese vocabulary. Fine-tuning seconds per step: a timed run of each model of its own (OUT/speed:
  the sentiment task's first 1,280 training reviews, 64 tokens, batch 32, the median of its logged rows), the
  same texts for every model; a task-distilled row's step costs more (the teacher's forward pass), and is not
  what this column shows.
- A quiet machine is needed only for the minutes that time: the four pieces' timing runs, which all come first,
  and the speed runs (OUT/speed, embed), which come last. Everything between runs a fixed number of steps or
  epochs, so other work on the machine then only makes the table take longer.
- Intervals: each row's 3-seed mean against each of the teacher's 3 seeds (`bertkit compare`, paired on the
  test examples), shown as the mean difference in the widest of the three intervals; the same against the
  undistilled student of the same size. The papers' ratios (DistilBERT: 40% fewer parameters, 60% faster, 97%
  of BERT-base on GLUE; TinyBERT-4: 7.5x smaller, 9.4x faster, 96.8%) stand beside ours in the note, and the
  note says, task by task, where distillation did not pay (its interval against the undistilled student holds
  0 or lies below it).
- Time, estimated from the one-hour model's throughput (not yet a run of this script): pretraining and
  distillation 4 x (12 min + ~2 min for the timing run, two start-ups that build the masked corpus, ~40 s each
  on a busy machine, and evaluation) = 56 min; fine-tuning, 4 runs per task (two rates for seed 0) on 3 tasks:
  the teacher ~16 min (sentiment-all ~90 s a run, sentiment-500 ~85 s with its 15 dev passes, NER ~60 s), each
  2 x 256 row half that (2 rows, 16 min), each 4 x 128 row ~5 min (2 rows, start-up bound), DistilBERT task
  distillation ~10 min (3 seeds, ~0.85 of the teacher's cost), TinyBERT's ~15 min (3 intermediate epochs over
  the 13,891 reviews dominate); embed ~2 min; ~90 `bertkit compare` calls ~4 min. In all ~2 h 15 min; rerun
  it to resume after an interruption.
- --smoke: 1 seed, 10 steps per piece, 64 training and 64 dev/test examples, 1 epoch, 50 texts, 1 round, and
  (without runs/pretrain-zh/model or --teacher) a 20-step teacher in OUT/teacher: the same pieces, commands,
  table and figure (18 minutes on a busy machine, mostly process start-up); its figures mean nothing, and its
  fine-tuning runs are too short to log a timed step ("—").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bertkit.errors import BertkitError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import compare_recipes as recipes  # noqa: E402 - scripts/ is a folder of scripts, not a package
from compare_recipes import BK, Interval, Task, compare, doc_tables, done, flags, points, run_piece  # noqa: E402

DOCS_TABLE = "distillation"  # the block of docs/distillation.md that --write-docs fills
ONE_HOUR_MODEL = Path("runs/pretrain-zh/model")
GENERAL = {  # the corpus and schedule every student is made with, distilled or not
    "--corpus": "peoples-daily reviews",
    "--max-seq-length": "128",
    "--batch-size": "64",
    "--lr": "5e-4",
    "--warmup": "0.06",
    "--chunk-tokens": "0",
    "--cache-dir": "runs/cache",
}
PRETRAIN = {"--preset": "bert-mini-chinese", "--objective": "full", "--dynamic": "", "--dropout": "0"}
WEIGHTS = {128: 1.0}  # one length: the timed seconds per step are its median
TASKS = {name: recipes.TASKS[name] for name in ("sentiment-all", "sentiment-500", "ner")}
SPEED_TASK = "sentiment-all"  # the task of the timed fine-tuning runs (OUT/speed)
ROUNDS = 3


@dataclass(frozen=True)
class Row:
    """One row of the table: the model it fine-tunes (a piece: "teacher" or a key of student_sizes), how
    ("finetune", or "distill-task" from the teacher's fine-tuned model), and the undistilled row it is compared
    with besides the teacher (None for the teacher and the undistilled rows)."""

    label: str
    model: str
    how: str = "finetune"
    undistilled: str | None = None


ROWS = {
    "teacher": Row("teacher", "teacher"),
    "distilbert": Row("DistilBERT student, fine-tuned", "distilbert", undistilled="distilbert-size"),
    "distilbert+task": Row("DistilBERT student, task-distilled", "distilbert", "distill-task", "distilbert-size"),
    "distilbert-size": Row("DistilBERT's size, no distillation", "distilbert-size"),
    "tinybert": Row("TinyBERT student, fine-tuned", "tinybert", undistilled="tinybert-size"),
    "tinybert+task": Row("TinyBERT student, task-distilled", "tinybert", "distill-task", "tinybert-size"),
    "tinybert-size": Row("TinyBERT's size, no distillation", "tinybert-size"),
}
PAPERS = {  # (what, parameters as a share of the teacher, speed-up, share of the teacher's score)
    "distilbert": ("DistilBERT paper: 6 of BERT-base's 12 layers, GLUE", 0.60, 1.6, 0.97),
    "tinybert": ("TinyBERT-4 paper: 4 × 312 from BERT-base, GLUE", 1 / 7.5, 9.4, 0.968),
}


@dataclass
class Settings:
    """What one invocation runs: the teacher, the budget, and the smoke test's cuts."""

    teacher: Path
    minutes: float
    out: Path
    min_steps: int = 200
    timing_steps: int = recipes.TIMING_STEPS
    grid: list[str] = field(default_factory=lambda: list(recipes.GRID))
    tasks: dict[str, Task] = field(default_factory=lambda: dict(TASKS))
    seeds: tuple[int, ...] = recipes.SEEDS
    texts: int = 1000
    rounds: int = ROUNDS
    speed_examples: int = 1280  # 40 fine-tuning steps of 32


def smoke_settings(teacher: Path, out: Path) -> Settings:
    """The smoke test: every piece and command of the real run, on 1 seed and a few steps and examples."""
    cut = {"--max-train-examples": "64", "--max-eval-examples": "64"}
    tasks = {name: Task(t.label, t.metric, t.data | cut, t.finetune | {"--epochs": "1"}) for name, t in TASKS.items()}
    return Settings(
        teacher, 0.0, out, min_steps=10, timing_steps=6, tasks=tasks, seeds=(0,), texts=50, rounds=1, speed_examples=64
    )


def student_sizes(config: dict) -> dict[str, list[str]]:
    """The four student pieces' commands from the teacher's config.json: DistilBERT (half the layers, the
    teacher's width), TinyBERT (4 layers or fewer, half the width: a multiple of the head count), and the same two
    sizes pretrained without distillation."""
    layers, width, heads = config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]
    half = max(1, layers // 2)  # distill's default
    tiny_layers, tiny_width = min(4, layers), max(heads, width // 2 // heads * heads)
    return {
        "distilbert": ["distill", "--method", "distilbert"],
        "tinybert": ["distill", "--method", "tinybert", "--student-layers", str(tiny_layers)]
        + ["--student-hidden", str(tiny_width)],
        "distilbert-size": ["pretrain", "--num-hidden-layers", str(half), "--hidden-size", str(width)],
        "tinybert-size": ["pretrain", "--num-hidden-layers", str(tiny_layers), "--hidden-size", str(tiny_width)],
    }


# --- the pieces ---------------------------------------------------------------------------------------------------


def teacher_model(s: Settings, smoke: bool) -> Path:
    """The teacher folder: --teacher as given, else the one-hour model, pretrained first by its own script when
    it is not there (resumed if a run of it was interrupted); the smoke test's is 20 steps of that recipe."""
    if s.teacher != ONE_HOUR_MODEL or done(ONE_HOUR_MODEL.parent):
        return s.teacher
    run, env = ONE_HOUR_MODEL.parent, dict(os.environ)
    if smoke:
        run, env["PRETRAIN_ZH_STEPS"] = s.out / "teacher", "20"
    if not done(run):
        extra = ["--out", str(run)] if smoke else []  # the script's own --out is runs/pretrain-zh; the last wins
        extra += ["--resume"] if run.is_dir() else []
        print("$ bash scripts/pretrain_zh.sh " + shlex.join(extra), flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "pretrain_zh.sh"), *extra], check=True, env=env)
    return run / "model"


def student_base(name: str, command: list[str], teacher: Path) -> list[str]:
    if command[0] == "distill":
        return [*command, "--teacher", str(teacher), *flags(GENERAL)]
    return [*command, *flags(PRETRAIN), "--tokenizer", str(teacher), *flags(GENERAL)]


def time_student(s: Settings, name: str, command: list[str], teacher: Path) -> int:
    """The piece's 40 timed steps (OUT/NAME/timing), and the steps its median seconds per step fit in --minutes.
    All four pieces are timed before any of them runs, so that only these minutes need a quiet machine."""
    log = s.out / "timings.jsonl"
    timing = s.out / name / "timing"
    if timing.exists() and not done(timing):
        shutil.rmtree(timing)  # an interrupted timing run is redone whole: its seconds must be one run's
    never = ["--eval-every", "100000", "--save-every", "100000"]
    base = student_base(name, command, teacher)
    run_piece(timing, [*base, "--steps", str(s.timing_steps), "--log-every", "2", *never], log)
    step_s = recipes.seconds_per_step(recipes.read_rows(timing / "metrics.jsonl"), WEIGHTS)
    return recipes.steps_for(step_s, s.minutes, s.min_steps)


def make_student(s: Settings, name: str, command: list[str], teacher: Path, steps: int | None = None) -> Path:
    """Run the piece for its timed steps (timing it first unless `steps` is given; resuming an unfinished run);
    its model folder."""
    if steps is None:
        steps = time_student(s, name, command, teacher)
    run = s.out / name / "general"
    every = str(min(500, steps))
    base = student_base(name, command, teacher)
    args = [*base, "--steps", str(steps), "--eval-every", every, "--save-every", every, "--resume"]
    run_piece(run, args, s.out / "timings.jsonl")
    return run / "model"


def teacher_task_model(s: Settings, task: str) -> str:
    """The teacher's seed-0 fine-tuned model at the rate it chose on dev: the teacher of `distill --task`."""
    return read_json(s.out / "teacher" / task / "seed-0" / "summary.json")["runs"][0]["model"]


def distill_task(s: Settings, row: str, task: str, student: Path, method: str) -> None:
    """`bertkit distill --task` for each seed, at the rate the student's plain fine-tuning chose on dev."""
    spec = s.tasks[task]
    plain = next(r for r, x in ROWS.items() if x.model == ROWS[row].model and x.how == "finetune")  # its own rate
    lr = read_json(s.out / plain / task / "seed-0" / "summary.json")["lr"]
    settings = {k: v for k, v in recipes.FINETUNE.items() if k != "--dropout"}  # the student keeps its own dropout
    args = ["distill", "--method", method, "--teacher", teacher_task_model(s, task), "--student", str(student)]
    args += [*flags(spec.data), *flags(spec.finetune), *flags(settings), "--lr", f"{lr:g}", "--overwrite"]
    for seed in s.seeds:
        run_piece(s.out / row / task / f"seed-{seed}", [*args, "--seed", str(seed)], s.out / "timings.jsonl")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the measurements ---------------------------------------------------------------------------------------------


def parameters(folder: Path) -> int:
    """The encoder's parameters (embeddings and layers, no pretraining head), as the papers count them."""
    from bertkit.hf import load_pretrained

    return sum(p.numel() for p in load_pretrained(str(folder), tokenizer=False).encoder.parameters())


EMBED_RATE = re.compile(r"embedded (\d+) texts in [\d.]+ s \((?P<rate>[\d.]+) texts/s\)")


def embed_rate(stderr: str) -> float:
    """The texts/s that `bertkit embed` prints on its last line."""
    found = list(EMBED_RATE.finditer(stderr))
    if not found:
        raise BertkitError("bertkit embed printed no 'embedded N texts' line: " + " / ".join(stderr.splitlines()[-2:]))
    return float(found[-1]["rate"])


def embed_speeds(s: Settings, models: dict[str, Path]) -> dict[str, float]:
    """Median texts/s of `bertkit embed` per model over --rounds rounds that alternate between the models (all see
    the same machine state), on the first N test reviews; kept in OUT/embed.json."""
    cache = s.out / "embed.json"
    if cache.is_file() and set(got := read_json(cache)) == set(models):
        return got
    from bertkit.builtin import sentiment_reviews

    texts = s.out / "embed" / "texts.txt"
    texts.parent.mkdir(parents=True, exist_ok=True)
    texts.write_text("".join(t + "\n" for t, _ in sentiment_reviews()[2][: s.texts]), encoding="utf-8")
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(s.rounds):
        for name, folder in models.items():
            args = ["embed", str(folder), "--input", str(texts), "--output", str(s.out / "embed" / f"{name}.npy")]
            print("$ bertkit " + shlex.join(args), flush=True)
            done_ = subprocess.run([BK, *args], check=True, capture_output=True, text=True)
            rates[name].append(embed_rate(done_.stderr))
    speeds = {name: statistics.median(r) for name, r in rates.items()}
    cache.write_text(json.dumps(speeds, indent=2) + "\n", encoding="utf-8")
    return speeds


def step_seconds(metrics: list[dict], batch_size: int) -> float | None:
    """Median seconds per step of one fine-tuning run's logged rows (batch size / sequences per second), the
    first row (start-up) left out; None when the log has no timed rows."""
    rates = [r["sequences_per_s"] for r in metrics if "eval" not in r and "sequences_per_s" in r][1:]
    return statistics.median(batch_size / r for r in rates) if rates else None


def finetune_step_seconds(folder: Path) -> float | None:
    """The median over every run under FOLDER; a task distillation's intermediate stage is left out: its step is
    not a fine-tuning step."""
    batch = int(recipes.FINETUNE["--batch-size"])
    logs = [m for m in sorted(folder.rglob("metrics.jsonl")) if m.parent.name != "intermediate"]
    times = [step_seconds(recipes.read_rows(m), batch) for m in logs]
    times = [t for t in times if t is not None]
    return statistics.median(times) if times else None


def timed_finetune(s: Settings, name: str, folder: Path) -> float | None:
    """Seconds per fine-tuning step of the model in FOLDER: a run of its own (OUT/speed/NAME) on the sentiment
    task's first --speed-examples training reviews (64 tokens, batch 32, one epoch, a row logged every 2 steps),
    made after the table's runs, so that only it needs a quiet machine; the median of its logged rows."""
    spec = TASKS[SPEED_TASK]
    cut = ["--max-train-examples", str(s.speed_examples), "--max-eval-examples", "64"]
    args = [
        "finetune",
        "--model",
        str(folder),
        *flags(spec.data),
        *cut,
        *flags(spec.finetune),
        *flags(recipes.FINETUNE),
    ]
    args += ["--lr", "1e-3", "--seeds", "0", "--log-every", "2", "--overwrite"]
    run_piece(s.out / "speed" / name, args, s.out / "timings.jsonl")
    return finetune_step_seconds(s.out / "speed" / name)


def row_tasks(s: Settings, row: str) -> dict:
    """A row's tasks: the seeds' test scores, the intervals against the teacher's seeds and (students) against
    the undistilled student's seeds, each the mean difference in the widest interval."""
    results = {}
    for task in s.tasks:
        folder = s.out / row / task
        result = {"scores": [recipes.test_score(folder / f"seed-{seed}") for seed in s.seeds]}
        against = {"teacher": "vs_teacher", ROWS[row].undistilled: "vs_undistilled"}
        for other, key in against.items():
            if other is None or other == row:
                continue
            intervals = [
                compare(
                    folder,
                    recipes.predictions(s.out / other / task / f"seed-{seed}")[0],
                    s.out / "compare" / f"{row}.{task}.vs-{other}-seed-{seed}.txt",
                )
                for seed in s.seeds
            ]
            result[key] = asdict(recipes.widest(intervals))
        results[task] = result
    return results


# --- the table, the note and the figure ---------------------------------------------------------------------------


def mean_score(result: dict, accuracy: bool) -> str:
    mean = 100 * statistics.fmean(result["scores"])
    return f"{mean:.1f}%" if accuracy else f"{mean:.1f}"


def bracket(interval: dict) -> str:
    i = Interval(**interval)
    return f"{points(i.difference)} [{points(i.low)}, {points(i.high)}]"


def cell(result: dict, accuracy: bool) -> str:
    """'81.0% (−2.1 [−3.4, −0.8]; +4.0 [+2.2, +5.9])': the mean test score, then the difference from the
    teacher and from the undistilled student of the same size, each in its widest paired 95% interval."""
    against = [bracket(result[k]) for k in ("vs_teacher", "vs_undistilled") if k in result]
    return mean_score(result, accuracy) + (f" ({'; '.join(against)})" if against else "")


def ratio(value: float | None, teacher: float | None, unit: str = "×") -> str:
    return "—" if value is None or not teacher else f"{value / teacher:.2f}{unit}"


HEADER = ["row", "parameters (share of the teacher)", "embed texts/s (× teacher)", "fine-tuning s/step"]


def table(results: dict, tasks: dict[str, Task]) -> tuple[list[str], list[list[str]]]:
    """The Markdown table's header and rows from results.json's form: {row: {"parameters", "texts_per_s",
    "step_seconds", "tasks"}}."""
    teacher = results["teacher"]
    header = [*HEADER, *(t.label for t in tasks.values())]
    rows = []
    for row, r in results.items():
        n, speed, step = r["parameters"], r["texts_per_s"], r["step_seconds"]
        first = [
            ROWS[row].label,
            f"{n:,} ({n / teacher['parameters']:.0%})",
            f"{speed:,.0f} ({ratio(speed, teacher['texts_per_s'])})",
            "—" if step is None else f"{step:.3f} ({ratio(step, teacher['step_seconds'])})",
        ]
        rows.append([*first, *(cell(r["tasks"][name], t.metric == "accuracy") for name, t in tasks.items())])
    return header, rows


def kept(results: dict, row: str, tasks: dict[str, Task]) -> str:
    """The row's mean test score as a share of the teacher's, averaged over the tasks (the papers' "97%"); "—"
    where the teacher scored 0 on a task (a smoke run's NER)."""
    teacher = {t: statistics.fmean(results["teacher"]["tasks"][t]["scores"]) for t in tasks}
    if not all(teacher.values()):
        return "—"
    share = statistics.fmean(statistics.fmean(results[row]["tasks"][t]["scores"]) / teacher[t] for t in tasks)
    return f"{share:.1%} (mean over {len(tasks)} tasks)"


def papers_table(results: dict, tasks: dict[str, Task]) -> str:
    """The papers' ratios beside ours: parameters as a share of the teacher, speed-up, share of its score."""
    teacher = results["teacher"]
    lines = [
        "| | parameters (share of the teacher) | speed-up | share of the teacher's score |",
        "|---|---|---|---|",
    ]
    for method, (what, size, speed, score) in PAPERS.items():
        lines.append(f"| {what} | {size:.0%} | {speed:.1f}× (inference) | {score:.1%} |")
        for row in (method, f"{method}+task", f"{method}-size"):
            if row in results:
                r = results[row]
                lines.append(
                    f"| ours: {ROWS[row].label} | {r['parameters'] / teacher['parameters']:.0%} | "
                    f"{ratio(r['texts_per_s'], teacher['texts_per_s'])} (`bertkit embed`) | "
                    f"{kept(results, row, tasks)} |"
                )
    return "\n".join(lines)


def verdict(results: dict, tasks: dict[str, Task]) -> list[str]:
    """Per distilled row and task, in words: whether distillation paid against the same size without it (its
    interval clear above 0), tied (holds 0) or lost (below 0); then the plain list of where it did not pay."""
    lines, unpaid = [], []
    for row, r in results.items():
        if ROWS[row].undistilled is None:
            continue
        for name, task in tasks.items():
            i = Interval(**r["tasks"][name]["vs_undistilled"])
            said = "paid" if i.low > 0 else ("did not pay: a tie" if i.high >= 0 else "did not pay: worse")
            if i.low <= 0:
                unpaid.append(f"{ROWS[row].label} on {task.label}")
            teacher = Interval(**r["tasks"][name]["vs_teacher"])
            lines.append(
                f"- {ROWS[row].label}, {task.label}: {points(i.difference)} [{points(i.low)}, {points(i.high)}] "
                f"against {ROWS[ROWS[row].undistilled].label}: {said}; {points(teacher.difference)} against the "
                "teacher" + (" (a tie)" if teacher.holds_zero() else "") + "."
            )
    lines.append("Distillation did not pay: " + ("; ".join(unpaid) if unpaid else "nowhere") + ".")
    return lines


def note(s: Settings, results: dict, pieces: dict[str, dict]) -> str:
    made = "; ".join(
        f"{name}: `bertkit {shlex.join(p['command'])}`, {p['steps']:,} steps" for name, p in pieces.items()
    )
    return (
        f"Teacher: {s.teacher}. {s.minutes:g} minutes per student piece (the same wall-clock time distilled or "
        f"not, at 128 tokens): {made}. `bertkit embed` (fp32) on {s.texts:,} test reviews, median of {s.rounds} "
        "rounds; fine-tuning seconds per step on the sentiment task's training reviews (64 tokens, batch 32). "
        f"Each task cell: the mean test score of {len(s.seeds)} fine-tuning seeds (lr chosen on dev by seed 0) and, "
        "in brackets, the difference from the teacher and then from the same size without distillation, each in "
        "the widest paired 95% interval over the other row's seeds (`bertkit compare`).\n\n"
        + papers_table(results, s.tasks)
        + "\n\n"
        + "\n".join(verdict(results, s.tasks))
    )


def plot(results: dict, tasks: dict[str, Task], png: Path) -> None:
    """One panel per task: each student's difference from the teacher (circles) and from the undistilled
    student of its size (squares), with their intervals, 0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n != "teacher"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks) + 2, 0.5 * len(names) + 1.6), sharey=True)
    for ax, (task, spec) in zip(axes, tasks.items(), strict=True):
        for y, name in enumerate(names):
            for key, marker, shift in (("vs_teacher", "o", -0.12), ("vs_undistilled", "s", 0.12)):
                if key not in results[name]["tasks"][task]:
                    continue
                i = Interval(**results[name]["tasks"][task][key])
                color = "grey" if i.holds_zero() else ("tab:green" if i.low > 0 else "tab:red")
                ax.errorbar(
                    100 * i.difference,
                    y + shift,
                    xerr=[[100 * (i.difference - i.low)], [100 * (i.high - i.difference)]],
                    fmt=marker,
                    color=color,
                    capsize=3,
                )
        ax.axvline(0, color="black", lw=1)
        teacher = mean_score(results["teacher"]["tasks"][task], spec.metric == "accuracy")
        ax.set_title(f"{spec.label}\n(teacher {teacher})", fontsize=9)
        ax.set_xlabel("difference, points")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), [ROWS[n].label for n in names])
    axes[0].invert_yaxis()
    fig.suptitle(
        "test split, mean of the fine-tuning seeds; ○ against the teacher, □ against the same size without "
        "distillation; bars: widest paired 95% interval (grey: holds 0)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# --- the run ------------------------------------------------------------------------------------------------------


def run_all(s: Settings, smoke: bool) -> tuple[dict, dict]:
    teacher = s.teacher = teacher_model(s, smoke)
    models = {"teacher": teacher}
    sizes = student_sizes(read_json(teacher / "config.json"))
    steps = {name: time_student(s, name, command, teacher) for name, command in sizes.items()}  # quiet minutes
    pieces = {}
    for name, command in sizes.items():
        models[name] = make_student(s, name, command, teacher, steps[name])
        summary = read_json(s.out / name / "general" / "summary.json")
        pieces[name] = {"command": command, "steps": summary["steps"]}
    for row, spec in ROWS.items():
        if spec.how == "finetune":
            for name, task in s.tasks.items():
                recipes.finetune(s, s.out / row / name, str(models[spec.model]), task)
    for row, spec in ROWS.items():
        if spec.how == "distill-task":
            method = pieces[spec.model]["command"][2]  # distill --method M
            for name in s.tasks:
                distill_task(s, row, name, models[spec.model], method)
    step_seconds_of = {name: timed_finetune(s, name, folder) for name, folder in models.items()}  # quiet minutes
    speeds = embed_speeds(s, models)
    results = {}
    for row, spec in ROWS.items():
        results[row] = {
            "parameters": parameters(models[spec.model]),
            "texts_per_s": speeds[spec.model],
            "step_seconds": step_seconds_of[spec.model],
            "tasks": row_tasks(s, row),
        }
    return results, pieces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--teacher", type=Path, default=ONE_HOUR_MODEL, help="the teacher model folder (default: %(default)s)"
    )
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget of each student piece")
    ap.add_argument("--out", type=Path, default=None, help="default runs/distill (runs/distill-smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="1 seed, a few steps and examples: checks the plumbing")
    doc_tables.add_arguments(ap)
    args = ap.parse_args()
    out = args.out or Path("runs/distill-smoke" if args.smoke else "runs/distill")
    s = smoke_settings(args.teacher, out) if args.smoke else Settings(args.teacher, args.minutes, out)
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "distillation.md"
    try:
        if args.smoke and args.write_docs:
            raise BertkitError("--smoke measures nothing worth a docs table; leave out --write-docs")
        if args.teacher != ONE_HOUR_MODEL and not (args.teacher / "config.json").is_file():
            raise BertkitError(f"--teacher {args.teacher}: no config.json there; give a model folder")
        if args.write_docs:
            doc_tables.require_blocks(page, [DOCS_TABLE], command)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    s.out.mkdir(parents=True, exist_ok=True)
    try:
        results, pieces = run_all(s, args.smoke)
    except subprocess.CalledProcessError as e:
        print(
            f"error: `{shlex.join(map(str, e.cmd))}` failed (exit {e.returncode}); rerun this command to resume",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    (s.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    header, rows = table(results, s.tasks)
    text = doc_tables.markdown_table(header, rows) + "\n\n" + note(s, results, pieces)
    (s.out / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(results, s.tasks, s.out / "distill.png")
    print(text)
    print(f"table: {s.out}/table.md  figure: {s.out}/distill.png  timings: {s.out}/timings.jsonl")
    if args.write_docs:
        doc_tables.exit_on_error(
            doc_tables.write_table, page, DOCS_TABLE, header, rows, command, note(s, results, pieces)
        )


if __name__ == "__main__":
    main()
