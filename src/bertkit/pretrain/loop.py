"""The training loop, visible in one function: `pretrain`.

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
from bertkit.pretrain.objectives import BertPretraining
from bertkit.pretrain.plots import plot_metrics
from bertkit.pretrain.runs import check_out_dir, last_good, truncate_log
from bertkit.pretrain.shards import WORD_START_BIT
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


@dataclass(frozen=True)
class Phase:
    max_seq_length: int
    batch_size: int  # sequences per micro-batch
    end_step: int  # the phase runs until this optimizer step


def rank_slice(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """This rank's rows of a global batch: rank r of N takes rows [r·B/N, (r+1)·B/N), so the ranks' slices
    are disjoint and together the whole batch."""
    share = len(batch["input_ids"]) // world
    return {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}


def sampling_noise(shape: torch.Size, seed: int, step: int, micro: int) -> torch.Tensor:
    """Uniforms for the whole global micro-batch, from (seed, step, micro-batch) alone: the same whatever the
    number of processes that share the batch, and again after a resume (no RNG state to save)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1024 + micro)
    return torch.rand(shape, generator=g)


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
        plan.append(Phase(length, max(1, cfg.batch_size * first // length), end))
    return plan


def pretrain(
    model: BertPretraining,
    tokenizer,
    train_data: PretrainingData,
    eval_data: PretrainingData | None,
    cfg: TrainConfig,
    resume: bool = False,
    device: str | None = None,
) -> dict:
    # Data parallel under torchrun: every rank builds the same epochs and takes its slice of each global batch,
    # so N processes x B/N sequences follow the trajectory of 1 x B. Only rank 0 writes files.
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

    # ---- resume: weights, optimizer, schedule, every RNG and the data position
    step, epoch, batch_index, saved_phase = 0, 0, 0, 0
    if resume:
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
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            set_rng_state(state["rng"])
            step, epoch, batch_index = state["step"], state["epoch"], state["batch_index"]
            saved_phase = state.get("phase", 0)
            if main:
                truncate_log(out / "metrics.jsonl", step)
                print(f"resuming from {folder} (step {step})")
        elif damaged or (out / "summary.json").exists() or (out / "model").exists():
            raise BertkitError(f"--resume: {out} holds a run with no usable checkpoint; give another --out")
        elif main:
            print(f"no checkpoint in {out / 'checkpoints'} yet; starting from step 0 (the same seed, the same steps)")
    if step == 0 and main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_text(out / "train_config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    # A fixed baseline to judge MLM accuracy by: always predict the corpus's most frequent token.
    baseline_id = most_frequent_token(train_data)
    # A checkpoint written at the end of a phase resumes in it: the switch below then runs as it would have.
    phase = saved_phase

    def start_phase(i: int, epoch: int, batch_index: int):
        """The phase's data at its length; the held-out epoch is seeded, so built once per phase."""
        p = plan[i]
        data = replace(train_data, max_seq_length=p.max_seq_length)
        held_out = replace(eval_data, max_seq_length=p.max_seq_length) if eval_data is not None else None
        return (
            data,
            held_out,
            (held_out.epoch(0) if held_out is not None else None),
            data.batches(p.batch_size, epoch, batch_index),
        )

    phase_data, phase_eval, eval_epoch, batches = start_phase(phase, epoch, batch_index)
    # The first batch before any output: a corpus that gives no instances is one error line, not a bar at 0%.
    batches = itertools.chain([next(batches)], batches)
    net = model
    if world > 1:  # gradients averaged over the ranks; some heads' parameters may take no part (the pooler)
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    log = open(out / "metrics.jsonl", "a", encoding="utf-8") if main else None  # noqa: SIM115 - closed in `finally`
    # On a terminal the bar redraws in place; in a log file it writes a line every 30 s.
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not (cfg.progress and main),
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30,
    )
    window = {
        "first_step": step,  # the window's rows average the steps after this one
        "mlm_loss": 0.0,
        "mlm_n": 0,
        "mlm_correct": 0,
        "nsp_loss": 0.0,
        "nsp_n": 0,
        "nsp_correct": 0,
        "rtd_loss": 0.0,
        "rtd_n": 0,
        "rtd_correct": 0,
        "rtd_replaced": 0,
        "rtd_detected": 0,
        "tokens": 0,
        "t0": time.perf_counter(),
    }
    last_eval: dict = {}
    bad_steps = 0  # non-finite steps in a row
    try:
        while step < cfg.steps:
            while step >= plan[phase].end_step:  # ---- the next phase of the length schedule
                phase, epoch, batch_index = phase + 1, 0, 0
                phase_data, phase_eval, eval_epoch, batches = start_phase(phase, 0, 0)
                trained = max(p.max_seq_length for p in plan[:phase])
                if cfg.copy_positions and plan[phase].max_seq_length > trained:
                    copy_positions(model.encoder, trained, plan[phase].max_seq_length)
                if main:
                    bar.write(
                        f"step {step}: phase {phase + 1} of {len(plan)}, {plan[phase].max_seq_length} tokens x "
                        f"{plan[phase].batch_size} sequences until step {plan[phase].end_step}"
                    )
            # ---- one optimizer step over `grad_accum` micro-batches
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            epoch, batch_index = micro[-1][0], micro[-1][1] + 1
            masked_total = sum(int((b["labels"] != -100).sum()) for _, _, b in micro)
            seqs_total = plan[phase].batch_size * cfg.grad_accum
            tokens_total = sum(int(b["attention_mask"].sum()) for _, _, b in micro)  # ELECTRA averages over these
            finite = True
            for i, (_, _, batch) in enumerate(micro):
                if getattr(model, "takes_sampling_u", False):  # ELECTRA: the generator's sampling noise
                    batch = batch | {"sampling_u": sampling_noise(batch["input_ids"].shape, cfg.seed, step, i)}
                batch = {k: v.to(device, non_blocking=True) for k, v in rank_slice(batch, rank, world).items()}
                sync = world == 1 or i == len(micro) - 1  # DDP all-reduces the gradients once, at the last
                with contextlib.nullcontext() if sync else net.no_sync():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        res = net(**batch)
                    # Every masked token of the step weighs the same, whichever micro-batch or rank it fell in;
                    # DDP averages over the ranks, so each rank's share of the sum is scaled by `world`.
                    loss = res.mlm_loss_sum / max(1, masked_total) + res.nsp_loss_sum / seqs_total
                    if res.rtd_loss_sum is not None:  # ELECTRA: L = L_mlm + λ · L_disc
                        loss = loss + res.rtd_weight * res.rtd_loss_sum / tokens_total
                    if not all_reduce_sum([float(torch.isfinite(loss))], world, device)[0] == world:
                        finite = False
                        break
                    (loss * world).backward()
                window["mlm_loss"] += res.mlm_loss_sum.item()
                window["mlm_n"] += res.mlm_count
                window["mlm_correct"] += res.mlm_correct
                window["nsp_loss"] += res.nsp_loss_sum.item()
                window["nsp_n"] += res.nsp_count
                window["nsp_correct"] += res.nsp_correct
                if res.rtd_loss_sum is not None:
                    window["rtd_loss"] += res.rtd_loss_sum.item()
                    for k in ("rtd_n", "rtd_correct", "rtd_replaced", "rtd_detected"):
                        window[k] += getattr(res, k.replace("_n", "_count") if k == "rtd_n" else k)
                window["tokens"] += int(batch["attention_mask"].sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm) if finite else None
            if not finite or not torch.isfinite(grad_norm):
                # A NaN or infinite loss (or gradient) would poison the weights and Adam's moments: skip the
                # update, keep the schedule and data moving, and stop after several in a row.
                skip_update(optimizer, schedule)
                bad_steps += 1
                what = f"loss {loss.item()}" if not finite else f"gradient norm {float(grad_norm)}"
                if main:
                    bar.write(f"warning: step {step + 1}: {what}; the update is skipped ({bad_steps} in a row)")
                if bad_steps >= cfg.max_bad_steps:
                    kept = checkpoints(out)
                    raise BertkitError(
                        f"the loss was not finite for {bad_steps} steps in a row (up to step {step + 1}); "
                        f"the last good checkpoint is {kept[-1] if kept else 'none (no step was saved)'}: "
                        "lower --lr, or check the data, and --resume"
                    )
                step += 1
                bar.update(1)
                continue
            bad_steps = 0
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)

            # ---- log
            if step % cfg.log_every == 0 or step == cfg.steps:
                seconds = time.perf_counter() - window["t0"]
                keys = ("mlm_loss", "mlm_n", "mlm_correct", "nsp_loss", "nsp_n", "nsp_correct", "tokens", "rtd_loss")
                keys += ("rtd_n", "rtd_correct", "rtd_replaced", "rtd_detected")
                window |= dict(zip(keys, all_reduce_sum([window[k] for k in keys], world, device), strict=True))
                row = {
                    "step": step,
                    "epoch": epoch,
                    "lr": schedule.get_last_lr()[0],
                    "mlm_loss": window["mlm_loss"] / max(1, window["mlm_n"]),
                    "mlm_accuracy": window["mlm_correct"] / max(1, window["mlm_n"]),
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": window["tokens"] / seconds,
                    "seconds_per_step": seconds / max(1, step - window["first_step"]),
                    "max_seq_length": plan[phase].max_seq_length,
                }
                if window["nsp_n"]:
                    row["nsp_loss"] = window["nsp_loss"] / window["nsp_n"]
                    row["nsp_accuracy"] = window["nsp_correct"] / window["nsp_n"]
                if window["rtd_n"]:  # ELECTRA's discriminator
                    row["rtd_loss"] = window["rtd_loss"] / window["rtd_n"]
                    row["rtd_accuracy"] = window["rtd_correct"] / window["rtd_n"]
                    row["rtd_recall"] = window["rtd_detected"] / max(1, window["rtd_replaced"])
                    row["replaced_share"] = window["rtd_replaced"] / window["rtd_n"]
                if main:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix(
                    loss=f"{row['mlm_loss'] + row.get('nsp_loss', 0) + 50 * row.get('rtd_loss', 0):.3f}",
                    mlm_acc=f"{row['mlm_accuracy']:.3f}",
                    tok_s=f"{row['tokens_per_s']:.0f}",
                    refresh=False,
                )
                window = dict.fromkeys(window, 0) | {
                    "first_step": step,
                    "t0": time.perf_counter(),
                    "mlm_loss": 0.0,
                    "nsp_loss": 0.0,
                    "rtd_loss": 0.0,
                }

            # ---- evaluate on held-out documents
            if phase_eval is not None and (step % cfg.eval_every == 0 or step == cfg.steps) and main:
                eval_start = time.perf_counter()
                last_eval = evaluate(model, phase_eval, cfg, device, use_bf16, baseline_id, eval_epoch) | {
                    "step": step,
                    "max_seq_length": plan[phase].max_seq_length,
                }
                log.write(json.dumps({"eval": last_eval}) + "\n")
                log.flush()
                bar.write(
                    f"step {step}: held-out MLM loss {last_eval['mlm_loss']:.3f}, accuracy at [MASK] "
                    f"{last_eval['cloze_accuracy']:.3f} (unigram baseline {last_eval['unigram_accuracy']:.3f})"
                    + (
                        f", {phase_eval.objective.upper()} accuracy {last_eval['nsp_accuracy']:.3f}"
                        if "nsp_accuracy" in last_eval
                        else ""
                    )
                    + (
                        f", replaced-token detection accuracy {last_eval['rtd_accuracy']:.3f} "
                        f"recall {last_eval['rtd_recall']:.3f}"
                        if "rtd_accuracy" in last_eval
                        else ""
                    )
                )
                plot_metrics(out / "metrics.jsonl", out / "curves.png")
                window["t0"] += time.perf_counter() - eval_start  # throughput counts training time only

            # ---- checkpoint: written beside the others, renamed into place, the newest few kept
            if step % cfg.save_every == 0 and step < cfg.steps and main:
                check_finite(model, f"at step {step}", last_good(out))
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "rng": rng_state(),
                    "step": step,
                    "epoch": epoch,
                    "batch_index": batch_index,
                    "phase": phase,  # of the length schedule; epoch and batch_index count within it
                }
                save_checkpoint(
                    out,
                    step,
                    lambda d: save_pretrained(d, model.encoder, model.heads(), tokenizer),
                    state,
                    cfg.keep_checkpoints,
                )
    finally:
        bar.close()
        if log is not None:
            log.close()

    summary = {
        "steps": step,
        "precision": "bf16" if use_bf16 else "fp32",
        "model": str(out / "model"),
        "eval": last_eval,
        "phases": [asdict(p) for p in plan],
        "processes": world,
    }
    check_finite(model, f"after step {step}", last_good(out))  # a diverged run is a failure, not a model
    if main:
        save_pretrained(out / "model", model.encoder, model.heads(), tokenizer)
        for name, (encoder, heads) in model.extra_models().items():  # ELECTRA's generator
            save_pretrained(out / name, encoder, heads, tokenizer)
            summary[name] = str(out / name)
        plot_metrics(out / "metrics.jsonl", out / "curves.png")
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    barrier(world)  # the others wait until the model folder is whole
    return summary


@torch.no_grad()
def evaluate(
    model: BertPretraining,
    data: PretrainingData,
    cfg: TrainConfig,
    device: torch.device,
    use_bf16: bool,
    baseline_id: int,
    epoch: Epoch | None = None,
) -> dict:
    """Held-out MLM loss/accuracy (and NSP accuracy; ELECTRA: the generator's MLM, the discriminator's accuracy
    over all real tokens and its recall of the replaced ones) on the first `eval_batches` batches of epoch 0.

    `cloze_accuracy` counts only the positions the model sees as [MASK] — the fill-in-the-blank skill.
    `mlm_accuracy` also counts the 10% of chosen tokens left unchanged, which a model gets right by copying
    its input, so it flatters a model that has learnt nothing about context; `unigram_accuracy` (always
    guess the corpus's most frequent token, at the same [MASK] positions) is what `cloze_accuracy` must beat.
    """
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(
        ("mlm_loss", "mlm_n", "mlm_correct", "nsp_n", "nsp_correct", "cloze_n", "cloze_correct", "baseline")
        + ("rtd_n", "rtd_correct", "rtd_replaced", "rtd_detected"),
        0,
    )
    epoch = epoch if epoch is not None else data.epoch(0)
    bs = min(cfg.batch_size, len(epoch))
    for i in range(min(cfg.eval_batches, len(epoch) // bs)):
        batch = {k: v.to(device) for k, v in epoch.batch(np.arange(i * bs, (i + 1) * bs)).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            res = model(**batch, return_logits=True)
        chosen = batch["labels"] != -100
        targets = batch["labels"][chosen]  # (N,) in the same order as res.mlm_logits
        cloze = batch["input_ids"][chosen] == data.vocab.mask_id  # (N,)
        sums["mlm_loss"] += res.mlm_loss_sum.item()
        sums["mlm_n"] += res.mlm_count
        sums["mlm_correct"] += res.mlm_correct
        sums["nsp_n"] += res.nsp_count
        sums["nsp_correct"] += res.nsp_correct
        sums["cloze_n"] += int(cloze.sum())
        sums["cloze_correct"] += int((res.mlm_logits.argmax(-1) == targets)[cloze].sum())
        sums["baseline"] += int((targets[cloze] == baseline_id).sum())
        sums["rtd_n"] += res.rtd_count
        sums["rtd_correct"] += res.rtd_correct
        sums["rtd_replaced"] += res.rtd_replaced
        sums["rtd_detected"] += res.rtd_detected
    model.train(was_training)
    n, nc = max(1, sums["mlm_n"]), max(1, sums["cloze_n"])
    result = {
        "mlm_loss": sums["mlm_loss"] / n,
        "mlm_accuracy": sums["mlm_correct"] / n,
        "cloze_accuracy": sums["cloze_correct"] / nc,
        "unigram_accuracy": sums["baseline"] / nc,
        "masked_tokens": sums["mlm_n"],
    }
    if sums["nsp_n"]:
        result["nsp_accuracy"] = sums["nsp_correct"] / sums["nsp_n"]
    if sums["rtd_n"]:  # ELECTRA: the discriminator on the generator's replacements, and how many it caught
        result["rtd_accuracy"] = sums["rtd_correct"] / sums["rtd_n"]
        result["rtd_recall"] = sums["rtd_detected"] / max(1, sums["rtd_replaced"])
        result["replaced_share"] = sums["rtd_replaced"] / sums["rtd_n"]
    return result


def most_frequent_token(data: PretrainingData) -> int:
    """The most frequent non-special token of the training documents (the unigram baseline's guess)."""
    counts = np.zeros(data.vocab.size, dtype=np.int64)
    for d in data.doc_ids[:: max(1, len(data.doc_ids) // 2000)]:  # a sample of documents is plenty
        for sentence in data.documents.document(int(d)):
            ids = np.asarray(sentence, dtype=np.int64) & (WORD_START_BIT - 1)  # without whole-word marks
            counts += np.bincount(ids, minlength=data.vocab.size)
    counts[list(data.vocab.special_ids)] = -1
    return int(counts.argmax())
