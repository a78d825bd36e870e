"""The training loop, visible in one function: `pretrain`, with its set-up, resume, logging, evaluation and
checkpoints in the small functions after it.

The loop trains any `Objective` (objectives.py): it sums the losses the objective reports, scaled by their units
over the whole step, and logs and plots whatever losses and metrics come back, by name.

AdamW (no weight decay on biases and LayerNorm), linear warm-up then linear decay, gradient accumulation
with the MLM loss normalised by the masked tokens of the whole step, bf16 autocast where the hardware has
it, gradient clipping, evaluation on held-out documents, checkpoints that resume exactly, a progress bar,
a JSONL metrics log and a PNG plot. No callbacks and no trainer class: read it top to bottom.

Exact resume: a checkpoint (checkpoints.py) holds the weights, the optimizer and schedule state, every RNG
state (torch's drives dropout) and the data position (epoch, batch). Epochs are rebuilt from their seed
(dataset.py), so the run after a resume takes the same batches with the same dropout masks as one that never
stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from bertkit.checkpoints import checkpoints, load_latest, rng_state, save_checkpoint, set_rng_state
from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.hf import save_pretrained
from bertkit.pretrain.dataset import Epoch, PretrainingData
from bertkit.pretrain.objectives import Objective, ObjectiveOutput
from bertkit.pretrain.plots import plot_metrics
from bertkit.pretrain.runs import check_out_dir, last_good, truncate_log
from bertkit.pretrain.shards import WORD_START_BIT
from bertkit.threads import follow_load
from bertkit.training import (
    all_reduce_sum,
    barrier,
    check_finite,
    check_seed,
    choose_precision,
    default_device,
    distributed,
    linear_schedule,
    param_groups,
    skip_update,
)


@dataclass
class TrainConfig:
    out_dir: str
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    warmup: float = 0.1  # a fraction of `steps` when < 1, else a number of steps
    weight_decay: float = 0.01
    beta2: float = 0.999  # RoBERTa uses 0.98
    eps: float = 1e-6
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    eval_every: int = 200
    eval_batches: int = 20
    save_every: int = 500
    max_bad_steps: int = 5  # stop after this many steps in a row with a NaN or infinite loss
    keep_checkpoints: int = 2  # the newest N checkpoints are kept (a damaged newest falls back to the one before)
    log_every: int = 10
    progress: bool = True
    # BERT's length schedule: (max_seq_length, fraction of the steps) in order, e.g. ((32, 0.9), (128, 0.1));
    # empty: one phase at the data's max_seq_length. See `phase_plan`.
    phases: tuple[tuple[int, float], ...] = ()
    # The masking unit of each phase (keys of `dataset.MASKING_UNITS`), one per phase; empty: the data's own unit
    # throughout. A recipe's stages (ERNIE's token, phrase, entity) run this way, as phases of one run.
    phase_units: tuple[str, ...] = ()
    # The tasks of each phase (ERNIE 2.0's stages, `ernie2.TASKS` names), one tuple per phase; the data is then an
    # `ernie2.TaskMix`. Empty: the data's own instances throughout.
    phase_tasks: tuple[tuple[str, ...], ...] = ()
    # A longer phase starts its new positions as copies of the trained ones (see `copy_positions`); only for a
    # model trained from scratch, whose positions past the earlier phases' length were never trained.
    copy_positions: bool = False
    # What the run is (corpus, model, masking, optimizer; the CLI's flags): written to train_config.json, and a
    # --resume must give the same (`check_resume`).
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise BertkitError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup < math.inf:
            raise BertkitError(f"--warmup must be 0 or more (a fraction below 1, else steps), got {self.warmup}")
        check_seed(self.seed)
        self.phases = tuple((int(n), float(f)) for n, f in self.phases)
        for n, f in self.phases:
            if n < 8 or not 0 < f <= 1:
                raise BertkitError(f"--phases {n}:{f}: a length of at least 8 tokens and a fraction in (0, 1]")
        if self.phases and abs(sum(f for _, f in self.phases) - 1) > 1e-6:
            shown = " ".join(f"{n}:{f:g}" for n, f in self.phases)
            raise BertkitError(f"--phases {shown}: the fractions add up to {sum(f for _, f in self.phases):g}, not 1")
        if self.phase_units and len(self.phase_units) != len(self.phases):
            raise BertkitError(
                f"--phases gives {len(self.phases)} phases and the recipe {len(self.phase_units)} masking stages; "
                "give one phase per stage"
            )
        if self.phase_tasks and len(self.phase_tasks) != len(self.phases):
            raise BertkitError(
                f"--phases gives {len(self.phases)} phases and --tasks {len(self.phase_tasks)} stages; "
                "give one phase per stage"
            )


@dataclass(frozen=True)
class Phase:
    max_seq_length: int
    batch_size: int  # sequences per micro-batch
    end_step: int  # the phase runs until this optimizer step
    unit: str | None = None  # its masking unit (a key of `dataset.MASKING_UNITS`); None: the data's own
    tasks: tuple[str, ...] | None = None  # its tasks (ERNIE 2.0's stage); None: the data's own


def rank_slice(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """This rank's rows of a global batch: rank r of N takes rows [r·B/N, (r+1)·B/N), so the ranks' slices
    are disjoint and together the whole batch."""
    share = len(batch["input_ids"]) // world
    return {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}


def step_noise(seed: int, step: int, micro: int) -> torch.Generator:
    """The generator an objective draws its per-step noise from (`Objective.prepare`), seeded by (seed, step,
    micro-batch) alone: the same whatever the number of processes that share the batch, and again after a
    resume (no RNG state to save)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1024 + micro)


@torch.no_grad()
def copy_positions(encoder, trained: int, length: int) -> None:
    """Positions [trained, length) become copies of the trained block [0, trained), repeated.

    A model trained from scratch on short sequences has random embeddings past them, and relearning
    "attend to the neighbours" at a longer length is slow (measured: BERT-Tiny after 5,400 steps at 32 tokens
    and 600 at 256 was at 8% held-out accuracy at [MASK] at 256 tokens, against 28% at 32). Copying starts
    each new position with a trained one's local pattern, as Longformer extended RoBERTa's 512 positions to
    4,096 (Beltagy et al. 2020, section 5); the same 600 steps then reach 18-26%. It does not prevent the
    collapse at the change itself: a model trained on 32 tokens reads 256 at the unigram level (~5%) with
    copies, interpolated positions or sharpened queries alike, and recovers only by training at that length
    (measured; docs/results.md, the length change).
    """
    offset = encoder.config.position_offset  # RoBERTa's positions start after the padding id
    weight = encoder.embeddings.position_embeddings.weight[offset:]  # (positions, E)
    for start in range(trained, length, trained):
        n = min(trained, length - start)
        weight[start : start + n] = weight[:n]


def phase_schedule(step: int, plan: list[Phase], warmup: float) -> float:
    """The learning-rate factor: warm-up then linear decay to 0 within each phase, as BERT's phases were two
    runs of run_pretraining.py, each with its own schedule (NVIDIA's BERT recipe does the same). The new
    positions of a longer phase start untrained, and a rate already decayed to ~0 would leave them so.
    `warmup` is a fraction of the phase's steps (< 1) or a number of steps."""
    start = 0
    for p in plan:
        if step < p.end_step or p is plan[-1]:
            n = p.end_step - start
            warmup_steps = int(warmup * n) if warmup < 1 else min(int(warmup), n)
            return linear_schedule(step - start, max(1, warmup_steps), n)
        start = p.end_step
    raise AssertionError("unreachable")


def phase_plan(cfg: TrainConfig, max_seq_length: int) -> list[Phase]:
    """The stretches of training at one sequence length each, as BERT trained 90% of its steps at 128 and the
    last 10% at 512 (short sequences leave the unigram plateau sooner; the long phase trains the positions
    past the short length, so the model reads whole inputs).

    `cfg.batch_size` is the first phase's; later phases keep the tokens per step (batch × length) of the
    first, so a phase at 4× the length takes a quarter of the sequences and a step costs about the same.
    """
    if not cfg.phases:
        return [Phase(max_seq_length, cfg.batch_size, cfg.steps)]
    first, plan, done = cfg.phases[0][0], [], 0.0
    for i, (length, fraction) in enumerate(cfg.phases):
        done += fraction
        end = cfg.steps if i == len(cfg.phases) - 1 else round(done * cfg.steps)
        unit = cfg.phase_units[i] if cfg.phase_units else None
        tasks = cfg.phase_tasks[i] if cfg.phase_tasks else None
        plan.append(Phase(length, max(1, cfg.batch_size * first // length), end, unit, tasks))
    return plan


class Window:
    """Sums of an objective's losses and metrics over the steps since the last log row (or over held-out batches),
    and the row they make: `NAME_loss` = Σ sum / Σ count for every loss, and `NAME` = Σ numerator / Σ denominator
    for every metric; a name whose units summed to 0 is left out. Nothing here knows any objective."""

    def __init__(self, first_step: int = 0):
        self.first_step = first_step  # the window's rows average the steps after this one
        self.t0 = time.perf_counter()
        self.tokens = 0  # real tokens trained on: the throughput
        self.sums: dict[str, list[float]] = {}  # "loss NAME" / "metric NAME" -> [numerator, denominator]
        self.weights: dict[str, float] = {}

    def add(self, res: ObjectiveOutput) -> None:
        for name, loss in res.losses.items():
            acc = self.sums.setdefault(f"loss {name}", [0.0, 0])
            acc[0] += loss.sum.item()
            acc[1] += loss.count
            self.weights[name] = loss.weight
        for name, (numerator, denominator) in res.metrics.items():
            acc = self.sums.setdefault(f"metric {name}", [0, 0])
            acc[0] += numerator
            acc[1] += denominator

    def reduce(self, world: int, device: torch.device) -> None:
        """Every rank's sums added up (the ranks run the same objective, so they hold the same names)."""
        keys = sorted(self.sums)
        flat = [x for k in keys for x in self.sums[k]] + [self.tokens]
        flat = all_reduce_sum(flat, world, device)
        self.sums = {k: flat[2 * i : 2 * i + 2] for i, k in enumerate(keys)}
        self.tokens = flat[-1]

    def row(self) -> dict[str, float]:
        row = {}
        for key, (numerator, denominator) in self.sums.items():
            kind, name = key.split(" ", 1)
            if denominator:
                row[f"{name}_loss" if kind == "loss" else name] = numerator / denominator
        return row

    def total_loss(self, row: dict) -> float:
        """The logged losses, weighted as the step's loss weighs them (for the progress bar)."""
        return sum(w * row[f"{n}_loss"] for n, w in self.weights.items() if f"{n}_loss" in row)


def pretrain(
    model: Objective,
    tokenizer,
    train_data: PretrainingData,
    eval_data: PretrainingData | None,
    cfg: TrainConfig,
    resume: bool = False,
    device: str | None = None,
) -> dict:
    """Train `model` (any `Objective`) for `cfg.steps` optimizer steps; write OUT/model, metrics.jsonl, curves.png,
    summary.json and checkpoints. Data parallel under torchrun: every rank builds the same epochs and takes its
    slice of each global batch, so N processes x B/N sequences follow the trajectory of 1 x B. Only rank 0
    writes files."""
    run = start_run(model, train_data, cfg, resume, device)
    main, out = run.rank == 0, run.out
    # A fixed baseline to judge MLM accuracy by: always predict the corpus's most frequent token.
    baseline_id = most_frequent_token(train_data)
    # A checkpoint written at the end of a phase resumes in it: the switch below then runs as it would have.
    held_out, batches = phase_data(train_data, eval_data, run.plan[run.phase], run.epoch, run.batch_index)
    # The first batch before any output: a corpus that gives no instances is one error line, not a bar at 0%.
    batches = itertools.chain([next(batches)], batches)
    net = model
    if run.world > 1:  # gradients averaged over the ranks; some heads' parameters may take no part (the pooler)
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    log = open(out / "metrics.jsonl", "a", encoding="utf-8") if main else None  # noqa: SIM115 - closed in `finally`
    # On a terminal the bar redraws in place; in a log file it writes a line every 30 s.
    bar = tqdm(
        total=cfg.steps,
        initial=run.step,
        disable=not (cfg.progress and main),
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30,
    )
    window, last_eval, bad_steps = Window(run.step), {}, 0  # bad_steps: non-finite steps in a row
    try:
        while run.step < cfg.steps:
            while run.step >= run.plan[run.phase].end_step:  # ---- the next phase of the length schedule
                held_out, batches = next_phase(run, model, train_data, eval_data, cfg, bar)
            # ---- one optimizer step over `grad_accum` micro-batches
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            run.epoch, run.batch_index = micro[-1][0], micro[-1][1] + 1
            loss, grad_norm = train_step(net, model, [b for _, _, b in micro], run, cfg, window)
            follow_load()  # a step boundary: the thread count may follow the load (bertkit.threads)
            if grad_norm is None or not torch.isfinite(grad_norm):
                # A NaN or infinite loss (or gradient) would poison the weights and Adam's moments: skip the
                # update, keep the schedule and data moving, and stop after several in a row.
                bad_steps += 1
                what = f"loss {loss.item()}" if grad_norm is None else f"gradient norm {float(grad_norm)}"
                skip_bad_step(run, cfg, bar, bad_steps, what)
                continue
            bad_steps = 0
            run.optimizer.step()
            run.schedule.step()
            run.optimizer.zero_grad(set_to_none=True)
            run.step += 1
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:  # ---- log
                write_row(run, window, grad_norm, log, bar)
                window = Window(run.step)
            if held_out is not None and (run.step % cfg.eval_every == 0 or run.step == cfg.steps) and main:
                eval_start = time.perf_counter()  # ---- evaluate on held-out documents
                last_eval = evaluate(model, held_out[0], cfg, run.device, run.use_bf16, baseline_id, held_out[1])
                last_eval |= {"step": run.step, "max_seq_length": run.plan[run.phase].max_seq_length}
                log.write(json.dumps({"eval": last_eval}) + "\n")
                log.flush()
                shown = ", ".join(f"{k} {v:.3f}" for k, v in last_eval.items() if k not in EVAL_NOT_SHOWN)
                bar.write(f"step {run.step}: held-out {shown}")
                plot_metrics(out / "metrics.jsonl", out / "curves.png")
                window.t0 += time.perf_counter() - eval_start  # throughput counts training time only
            if run.step % cfg.save_every == 0 and run.step < cfg.steps and main:  # ---- checkpoint
                save_state(run, model, tokenizer, cfg)
    finally:
        bar.close()
        if log is not None:
            log.close()
    return finish_run(run, model, tokenizer, last_eval)


EVAL_NOT_SHOWN = {"step", "max_seq_length", "masked_tokens"}


@dataclass
class Run:
    """What the loop carries from step to step; a checkpoint saves and restores it."""

    out: Path
    rank: int
    world: int
    device: torch.device
    use_bf16: bool
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    plan: list[Phase]
    step: int = 0
    epoch: int = 0  # epoch and batch_index count within the length schedule's phase
    batch_index: int = 0
    phase: int = 0


def start_run(model: Objective, train_data: PretrainingData, cfg: TrainConfig, resume: bool, device) -> Run:
    """The output folder, device, precision, optimizer and schedule; with `resume`, the newest good checkpoint's
    weights, optimizer and schedule, every RNG and the data position."""
    rank, world = distributed()
    main = rank == 0
    if main:  # the others would race with rank 0's first writes
        check_out_dir(cfg.out_dir, resume)
    out = Path(cfg.out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = default_device(device)
    use_bf16, why = choose_precision(cfg.precision, device)
    if main:
        print(f"precision: {why}" + (f"; {world} processes" if world > 1 else ""))
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, cfg.beta2), eps=cfg.eps, fused=True
    )  # fused (CPU and CUDA): one kernel over all parameters; 7 ms a step against 43 for BERT-Mini's on CPU
    plan = phase_plan(cfg, train_data.max_seq_length)
    for p in plan:
        if p.batch_size % world:
            raise BertkitError(
                f"a batch of {p.batch_size} sequences ({p.max_seq_length} tokens) does not split over {world} "
                "processes; make --batch-size (and each phase's) a multiple of the process count"
            )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: phase_schedule(s, plan, cfg.warmup))
    run = Run(out, rank, world, device, use_bf16, optimizer, schedule, plan)
    if resume:
        resume_run(run, model)
    if run.step == 0 and main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_text(out / "train_config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    return run


def resume_run(run: Run, model: Objective) -> None:
    main, out = run.rank == 0, run.out
    state, folder, damaged = load_latest(out)
    for warning in damaged if main else []:
        print(f"warning: {warning}" + (f"; resuming from {folder} instead" if folder else ""), file=sys.stderr)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise BertkitError(
                f"--resume: the checkpoint {folder} holds another model than these flags build (another "
                "--preset or size?); resume with the run's flags"
            ) from None
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        run.step, run.epoch, run.batch_index = state["step"], state["epoch"], state["batch_index"]
        run.phase = state.get("phase", 0)
        if main:
            truncate_log(out / "metrics.jsonl", run.step)
            print(f"resuming from {folder} (step {run.step})")
    elif damaged or (out / "summary.json").exists() or (out / "model").exists():
        raise BertkitError(f"--resume: {out} holds a run with no usable checkpoint; give another --out")
    elif main:
        print(f"no checkpoint in {out / 'checkpoints'} yet; starting from step 0 (the same seed, the same steps)")


def phase_data(train_data: PretrainingData, eval_data: PretrainingData | None, p: Phase, epoch: int, start: int):
    """A phase's held-out data and its epoch (seeded, so built once per phase), and its training batches from
    (epoch, batch) on."""
    stage = {k: v for k, v in (("unit", p.unit), ("tasks", p.tasks)) if v is not None}
    data = replace(train_data, max_seq_length=p.max_seq_length, **stage)
    held_out = replace(eval_data, max_seq_length=p.max_seq_length, **stage) if eval_data is not None else None
    return (held_out, held_out.epoch(0)) if held_out is not None else None, data.batches(p.batch_size, epoch, start)


def next_phase(run: Run, model: Objective, train_data, eval_data, cfg: TrainConfig, bar):
    run.phase, run.epoch, run.batch_index = run.phase + 1, 0, 0
    p = run.plan[run.phase]
    trained = max(q.max_seq_length for q in run.plan[: run.phase])
    if cfg.copy_positions and p.max_seq_length > trained:
        copy_positions(model.encoder, trained, p.max_seq_length)
    if run.rank == 0:
        bar.write(
            f"step {run.step}: phase {run.phase + 1} of {len(run.plan)}, {p.max_seq_length} tokens x "
            f"{p.batch_size} sequences until step {p.end_step}"
            + (f", masking {p.unit}" if p.unit else "")
            + (f", tasks {', '.join(p.tasks)}" if p.tasks else "")
        )
    return phase_data(train_data, eval_data, p, 0, 0)


def train_step(net, model: Objective, micro: list[dict], run: Run, cfg: TrainConfig, window: Window):
    """Forward and backward over the step's micro-batches (each the whole global batch; this rank takes its
    slice), then the clipped gradient norm. Returns (loss, grad_norm); grad_norm is None when a loss was not
    finite on some rank, and then the step's gradients are incomplete and must not be used."""
    step_units: dict[str, int] = {}
    for batch in micro:  # every loss's units over the whole step, before any forward pass
        for name, n in model.units(batch).items():
            step_units[name] = step_units.get(name, 0) + n
    for i, batch in enumerate(micro):
        batch = model.prepare(batch, step_noise(cfg.seed, run.step, i))
        batch = {k: v.to(run.device, non_blocking=True) for k, v in rank_slice(batch, run.rank, run.world).items()}
        sync = run.world == 1 or i == len(micro) - 1  # DDP all-reduces the gradients once, at the last
        with contextlib.nullcontext() if sync else net.no_sync():
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
                res = net(batch)
            # DDP averages over the ranks, so each rank's share of the step's sums is scaled by `world`.
            loss = res.total(step_units)
            if not all_reduce_sum([float(torch.isfinite(loss))], run.world, run.device)[0] == run.world:
                return loss, None
            (loss * run.world).backward()
        window.add(res)
        window.tokens += int(batch["attention_mask"].sum())
        del res  # its logits would otherwise live on into the next micro-batch
    return loss, torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)


def skip_bad_step(run: Run, cfg: TrainConfig, bar, bad_steps: int, what: str) -> None:
    skip_update(run.optimizer, run.schedule)
    if run.rank == 0:
        bar.write(f"warning: step {run.step + 1}: {what}; the update is skipped ({bad_steps} in a row)")
    if bad_steps >= cfg.max_bad_steps:
        kept = checkpoints(run.out)
        raise BertkitError(
            f"the loss was not finite for {bad_steps} steps in a row (up to step {run.step + 1}); "
            f"the last good checkpoint is {kept[-1] if kept else 'none (no step was saved)'}: "
            "lower --lr, or check the data, and --resume"
        )
    run.step += 1
    bar.update(1)


def write_row(run: Run, window: Window, grad_norm: torch.Tensor, log, bar) -> None:
    seconds = time.perf_counter() - window.t0
    window.reduce(run.world, run.device)
    measured = window.row()
    row = {
        "step": run.step,
        "epoch": run.epoch,
        "lr": run.schedule.get_last_lr()[0],
        **measured,
        "grad_norm": float(grad_norm),
        "tokens_per_s": window.tokens / seconds,
        "seconds_per_step": seconds / max(1, run.step - window.first_step),
        "max_seq_length": run.plan[run.phase].max_seq_length,
    }
    if log is not None:
        log.write(json.dumps(row) + "\n")
        log.flush()
    shown = {"loss": f"{window.total_loss(measured):.3f}"}
    shown |= {k: f"{v:.3f}" for k, v in measured.items() if k.endswith("_accuracy")}
    bar.set_postfix(**shown, tok_s=f"{row['tokens_per_s']:.0f}", refresh=False)


def save_state(run: Run, model: Objective, tokenizer, cfg: TrainConfig) -> None:
    """A checkpoint: written beside the others, renamed into place, the newest few kept."""
    check_finite(model, f"at step {run.step}", last_good(run.out))
    state = {
        "model": model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "rng": rng_state(),
        "step": run.step,
        "epoch": run.epoch,
        "batch_index": run.batch_index,
        "phase": run.phase,  # of the length schedule; epoch and batch_index count within it
    }

    def save(d):
        save_pretrained(d, model.encoder, model.heads(), tokenizer)
        model.save_extra(d)

    save_checkpoint(run.out, run.step, save, state, cfg.keep_checkpoints)


def finish_run(run: Run, model: Objective, tokenizer, last_eval: dict) -> dict:
    """The model folders (OUT/model and any extra models, as ELECTRA's generator), the plot and summary.json."""
    out = run.out
    summary = {
        "steps": run.step,
        "precision": "bf16" if run.use_bf16 else "fp32",
        "model": str(out / "model"),
        "eval": last_eval,
        "phases": [{k: v for k, v in asdict(p).items() if v is not None} for p in run.plan],  # unit when set
        "processes": run.world,
    }
    check_finite(model, f"after step {run.step}", last_good(out))  # a diverged run is a failure, not a model
    if run.rank == 0:
        save_pretrained(out / "model", model.encoder, model.heads(), tokenizer)
        model.save_extra(out / "model")
        for name, (encoder, heads) in model.extra_models().items():
            save_pretrained(out / name, encoder, heads, tokenizer)
            summary[name] = str(out / name)
        plot_metrics(out / "metrics.jsonl", out / "curves.png")
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    barrier(run.world)  # the others wait until the model folder is whole
    return summary


@torch.no_grad()
def evaluate(
    model: Objective,
    data: PretrainingData,
    cfg: TrainConfig,
    device: torch.device,
    use_bf16: bool,
    baseline_id: int,
    epoch: Epoch | None = None,
) -> dict:
    """The objective's losses and metrics on the first `eval_batches` batches of the held-out epoch 0, with
    `cloze_accuracy` (the batch field `is_mask` tells the objective which inputs were [MASK]) beside the
    unigram baseline.

    `cloze_accuracy` counts only the positions the model sees as [MASK] — the fill-in-the-blank skill.
    `mlm_accuracy` also counts the 10% of chosen tokens left unchanged, which a model gets right by copying
    its input, so it flatters a model that has learnt nothing about context; `unigram_accuracy` (always
    guess the corpus's most frequent token, at the same [MASK] positions) is what `cloze_accuracy` must beat.
    """
    was_training = model.training
    model.eval()
    window, baseline, cloze_n, masked_n = Window(), 0, 0, 0
    epoch = epoch if epoch is not None else data.epoch(0)
    bs = min(cfg.batch_size, len(epoch))
    for i in range(min(cfg.eval_batches, len(epoch) // bs)):
        batch = {k: v.to(device) for k, v in epoch.batch(np.arange(i * bs, (i + 1) * bs)).items()}
        chosen = batch["labels"] != -100
        batch["is_mask"] = batch["input_ids"] == data.vocab.mask_id
        batch = model.prepare(batch, torch.Generator().manual_seed(i))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            window.add(model(batch))
        cloze = batch["is_mask"] & chosen
        baseline += int((batch["labels"][cloze] == baseline_id).sum())
        cloze_n += int(cloze.sum())
        masked_n += int(chosen.sum())
    model.train(was_training)
    if not masked_n:  # nothing masked (a left-to-right language model): no cloze, no baseline at [MASK]
        return window.row()
    return window.row() | {"unigram_accuracy": baseline / max(1, cloze_n), "masked_tokens": masked_n}


def most_frequent_token(data: PretrainingData) -> int:
    """The most frequent non-special token of the training documents (the unigram baseline's guess)."""
    counts = np.zeros(data.vocab.size, dtype=np.int64)
    for d in data.doc_ids[:: max(1, len(data.doc_ids) // 2000)]:  # a sample of documents is plenty
        for sentence in data.documents.document(int(d)):
            ids = np.asarray(sentence, dtype=np.int64) & (WORD_START_BIT - 1)  # without whole-word marks
            counts += np.bincount(ids, minlength=data.vocab.size)
    counts[list(data.vocab.special_ids)] = -1
    return int(counts.argmax())
