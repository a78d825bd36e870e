"""Fine-tuning: one small head on the encoder, trained by a loop visible in one function, `finetune`.

The conventions are pretraining's (pretrain/loop.py): AdamW without weight decay on biases and LayerNorm, linear
warm-up then linear decay, gradient accumulation, bf16 autocast where the hardware has it, gradient clipping,
a JSONL metrics log, a PNG of the curves and a progress bar. What fine-tuning adds:
- evaluation on the dev set after every epoch; the best epoch's model is kept as a Hugging Face folder
  (`OUT/model`, loadable by `transformers`' AutoModelFor{SequenceClassification, TokenClassification,
  QuestionAnswering, MultipleChoice}), and training stops early after `patience` epochs without
  improvement; the test set is scored once, with the best model;
- optional layer-wise learning-rate decay (`layer_decay` < 1): the head trains at `lr`, the top layer at
  `lr * decay`, each lower layer one more factor down, the embeddings at `lr * decay**(L + 1)`;
- `finetune_seeds` runs the same fine-tuning with several seeds and reports the mean and the max, since
  small fine-tuning sets give results that vary from seed to seed;
- `random_init` trains the same architecture from random weights: the notes' control for pretraining.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.finetune.features import collate, encode_split, feature_length, length_grouped_batches
from bertkit.finetune.model import (
    build_model,
    layerwise_param_groups,
    load_task_model,
    loss_units,
    save_task_model,
    set_dropout,
)
from bertkit.finetune.predict import PREDICTIONS_FILE, evaluate, main_metric, write_predictions
from bertkit.finetune.tasks import TaskData
from bertkit.finetune.windows import QAOptions
from bertkit.threads import follow_load
from bertkit.training import (
    all_reduce_gradients,
    all_reduce_sum,
    barrier,
    broadcast_float,
    check_finite,
    check_seed,
    choose_precision,
    default_device,
    distributed,
    linear_schedule,
    skip_update,
)


@dataclass
class FinetuneConfig:
    out_dir: str
    epochs: int = 3
    batch_size: int = 32  # sequences (tagging and QA: windows; multiple choice: questions) per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    warmup: float = 0.1  # a fraction of all steps when < 1, else a number of steps (as pretraining's)
    weight_decay: float = 0.01
    layer_decay: float = 1.0  # 1: every layer at `lr`
    max_grad_norm: float = 1.0
    max_seq_length: int = 128  # [CLS] and [SEP]s included
    stride: int | None = None  # tagging and QA windows start this many pieces apart; None: half a window
    crf: bool = False  # tagging: a CRF over the tags
    max_query_length: int = 64  # QA: question pieces kept
    qa: QAOptions = field(default_factory=QAOptions)  # QA: how answers are read (null_threshold None: see finetune)
    patience: int = 0  # stop after this many epochs without a better dev score; 0: never stop early
    dropout: float | None = None  # hidden and attention dropout while fine-tuning; None: the model's config
    label_smoothing: float = 0.0  # of the training loss's cross-entropy (dev and test losses are plain)
    lm_weight: float = 0.0  # GPT-2: λ of the auxiliary language-model loss on the task's inputs (GPT-1: 0.5)
    pair_orders: str = "one"  # "both": a pair read A-B and B-A, the logits added (GPT-1's similarity)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "max_seq_length", "max_query_length", "log_every"):
            if getattr(self, name) < 1:
                raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise BertkitError(f"--lr must be a positive number, got {self.lr}")
        check_seed(self.seed, "--seeds")
        if not 0 <= self.warmup < math.inf:
            raise BertkitError(f"--warmup must be 0 or more (a fraction below 1, else steps), got {self.warmup}")
        if not 0 < self.layer_decay <= 1:
            raise BertkitError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if self.max_seq_length < 3:
            raise BertkitError(f"--max-seq-length {self.max_seq_length} leaves no room beside [CLS] and [SEP]")
        if self.stride is not None and not 1 <= self.stride <= self.max_seq_length - 2:
            raise BertkitError(f"--stride must be in 1..{self.max_seq_length - 2} (the window), got {self.stride}")
        if self.patience < 0:
            raise BertkitError(f"--patience must be 0 (off) or more, got {self.patience}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise BertkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        check_qa_options(self.qa)


def check_qa_options(opts: QAOptions) -> None:
    for name in ("max_answer_length", "n_best"):
        if getattr(opts, name) < 1:
            raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")


MAX_BAD_STEPS = 5  # steps in a row with a NaN or infinite loss before the run stops
RUN_FILES = ("metrics.jsonl", "summary.json", "finetune_config.json", "curves.png", "model", PREDICTIONS_FILE)
RUN_FILES += ("intermediate",)  # distill --task's starting student: set aside and put back with the run


ASIDE = ".replaced-run"  # inside OUT: an old run's files while a new one is made over it (--overwrite)


def check_run_dir(out_dir: str | Path, overwrite: bool) -> None:
    """A new fine-tuning (or baseline) run never writes over an old one unasked: its model, log and scores would
    be lost. A model folder (config.json) is never a run folder. Removes nothing: `replacing_run` does, once the
    new run is complete. An old run that an interrupted --overwrite left aside is put back first."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BertkitError(f"--out {out} is a file; pass a folder for the run")
    if (out / "config.json").exists():
        raise BertkitError(f"--out {out} is a model folder (config.json); write the run to another folder")
    if distributed()[0] == 0:
        recover_run(out)
    found = run_items(out)
    if found and not overwrite:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise BertkitError(
            f"--out {out} already holds a run ({shown}); pass --overwrite to replace it, or choose another --out"
        )


def run_items(out: Path) -> list[str]:
    """The files and folders of a run in `out` (its seed-N / lr-X runs included); other files are the user's."""
    if not out.is_dir():
        return []
    found = [n for n in RUN_FILES if (out / n).exists()]
    return found + sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(("seed-", "lr-")))


@contextlib.contextmanager
def replacing_run(out_dir: str | Path):
    """Make a new run in `out_dir`, over an old one if there is one (checked by `check_run_dir`): the old run's
    files move aside into OUT/.replaced-run and are deleted only once the new run is complete. A failure or
    Ctrl-C removes what the new run wrote and puts the old run back; after a kill the next command that checks
    the folder puts it back (`recover_run`). Under torchrun rank 0 moves files and the others wait."""
    out, aside = Path(out_dir), Path(out_dir) / ASIDE
    existed = out.exists()
    rank, world = distributed()
    if rank == 0 and run_items(out):
        moving = out / f"{ASIDE}.tmp"  # renamed to ASIDE once every item is in it: a kill midway loses nothing
        moving.mkdir()
        for name in run_items(out):
            os.replace(out / name, moving / name)
        os.replace(moving, aside)
    barrier(world)
    try:
        yield
    except BaseException:
        if rank == 0:
            _put_back(out)
            if not existed:  # a folder this run made, now empty again
                with contextlib.suppress(OSError):
                    out.rmdir()
        raise
    if rank == 0 and aside.exists():
        done = out / f"{ASIDE}.done"  # one rename marks the new run complete; then the old one goes
        os.replace(aside, done)
        shutil.rmtree(done)


def recover_run(out: Path) -> None:
    """Finish what a killed `replacing_run` left: a complete new run's old files are deleted; an old run caught
    half set aside is put back whole; an incomplete new run is removed and the old one put back."""
    shutil.rmtree(out / f"{ASIDE}.done", ignore_errors=True)
    moving = out / f"{ASIDE}.tmp"
    if moving.is_dir():  # killed while setting the old run aside: nothing new was written yet
        for item in moving.iterdir():
            os.replace(item, out / item.name)
        moving.rmdir()
    if (out / ASIDE).is_dir():
        _put_back(out)
        print(f"{out}: put back the run that an interrupted --overwrite had set aside")


def _put_back(out: Path) -> None:
    """Remove a new run's files and, where an old run was set aside, move it back."""
    for name in run_items(out):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    aside = out / ASIDE
    if aside.is_dir():
        for item in aside.iterdir():
            os.replace(item, out / item.name)
        aside.rmdir()


# ---------------------------------------------------------------------------------------------- training
def finetune(
    task: TaskData, init: str | Path, cfg: FinetuneConfig, random_init: bool = False, device=None, distiller=None
) -> dict:
    """Fine-tune `init` (a model folder) on `task`; writes OUT/model, metrics.jsonl, curves.png, summary.json.

    Under torchrun every rank encodes the same data and draws the same batches; rank r of N takes rows
    [r·n/N, (r+1)·n/N) of each micro-batch, the gradients are summed over the ranks before the update and every
    loss is a mean over the global batch, so N processes follow the trajectory of one (within float summation
    order; with dropout each rank draws its own masks). Dev and test are scored in slices gathered in order.
    Only rank 0 writes files. `distiller` (distill/task.py) replaces the training loss: see `FinetuneRun`."""
    run = start_finetune(task, init, cfg, random_init, device, distiller)
    main, out, metric = run.rank == 0, run.out, main_metric(task.kind)
    lengths = [feature_length(f) for f in run.train.features]
    rng = random.Random(cfg.seed)
    best, best_epoch, bad_epochs, history = -math.inf, 0, 0, []
    log = open(out / "metrics.jsonl", "w", encoding="utf-8") if main else None  # noqa: SIM115 - closed in `finally`
    bar = tqdm(total=run.total_steps, disable=not (cfg.progress and main), unit="step", dynamic_ncols=True)
    run.say = bar.write if main else _quiet  # lines above the bar, not through it
    try:
        for epoch in range(1, cfg.epochs + 1):
            batches = length_grouped_batches(lengths, cfg.batch_size, rng)
            train_loss = train_epoch(run, cfg, task.kind, epoch, batches, log, bar)
            # ---- evaluate on dev; keep the best model
            ev = {"epoch": epoch, "step": run.step, "train_loss": train_loss}
            if run.dev is not None:
                ev |= evaluate(run.model, run.dev, run.pad_id, bf16=run.use_bf16, qa=run.qa, shared=True)
            history.append(ev)
            if main:
                log.write(json.dumps({"eval": ev}) + "\n")
                log.flush()
            score = ev.get(metric, -math.inf if run.dev is not None else epoch)  # no dev set: the last epoch is best
            score = broadcast_float(score, run.world, run.device)  # one decision for all ranks: rank 0's
            run.say(
                f"epoch {epoch}: train loss {ev['train_loss']:.4f}"
                + (f", dev loss {ev['loss']:.4f}, dev {metric} {score:.4f}" if run.dev is not None else "")
            )
            if score > best:
                best, best_epoch, bad_epochs = score, epoch, 0
                check_finite(run.model, f"after epoch {epoch}", "the run failed and nothing was kept")
                if main:
                    save_task_model(out / "model", run.model, run.tokenizer)
            else:
                bad_epochs += 1
                if cfg.patience and bad_epochs >= cfg.patience:
                    run.say(f"early stop: no better dev {metric} for {bad_epochs} epochs")
                    break
    finally:
        bar.close()
        if log is not None:
            log.close()
    if main:
        plot_curves(out / "metrics.jsonl", out / "curves.png", metric)

    # ---- score the test set once, with the best model, read back from its folder as a user would
    summary = {
        "task": task.name,
        "metric": metric,
        "seed": cfg.seed,
        "random_init": random_init,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "steps": run.step,
        "precision": "bf16" if run.use_bf16 else "fp32",
        "processes": run.world,
        "model": str(out / "model"),
        "dev": {k: v for k, v in history[best_epoch - 1].items() if k not in ("epoch", "step")} if run.dev else {},
        "test": {},
    }
    if main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if task.test:
        score_test(summary, task, cfg, run.device)
    return summary


@dataclass
class FinetuneRun:
    """What the fine-tuning loop carries: where it writes, the model and data, the optimizer, the step."""

    out: Path
    rank: int
    world: int
    device: torch.device
    use_bf16: bool
    model: torch.nn.Module
    tokenizer: object
    pad_id: int
    train: object  # the encoded training split (features.EncodedSplit)
    dev: object | None
    qa: QAOptions
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    say: object = print  # `print` on rank 0 (the bar's `write` once it runs), silent elsewhere
    step: int = 0
    bad_steps: int = 0  # non-finite steps in a row
    # The training loss: `model.loss_sum`, or a distiller's (`loss_sum(model, logits, batch, label_smoothing)`,
    # summed over the same `loss_units`); its `start(model, device, use_bf16)` runs once the model is built.
    distiller: object = None


def start_finetune(task: TaskData, init, cfg: FinetuneConfig, random_init: bool, device, distiller=None) -> FinetuneRun:
    """The model (from `init`, or random weights of its shape), the encoded splits, the optimizer and schedule."""
    out = Path(cfg.out_dir)
    rank, world = distributed()
    main = rank == 0
    say = print if main else _quiet
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = default_device(device)
    use_bf16, why = choose_precision(cfg.precision, device)
    say(f"precision: {why}" + (f"; {world} processes" if world > 1 else ""))
    if not task.train:
        raise BertkitError(f"task {task.name}: no training examples")
    torch.manual_seed(cfg.seed)
    model, tokenizer = build_model(init, task.kind, task.labels, random_init, cfg.crf, cfg.pair_orders)
    model.check_label_smoothing(cfg.label_smoothing)
    model.lm_weight = cfg.lm_weight
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    model.to(device)
    if distiller is not None:
        distiller.start(model, device, use_bf16)
    if cfg.max_seq_length > model.encoder.config.max_length:
        raise BertkitError(
            f"--max-seq-length {cfg.max_seq_length} is more than the model's max_position_embeddings "
            f"({model.encoder.config.max_length})"
        )
    qa = qa_options(task, cfg)
    if qa.null_threshold is not None and cfg.qa.null_threshold is None:
        say("unanswerable questions in the data (SQuAD 2.0): answers are empty when the null score wins")
    tokenizer.model_max_length = cfg.max_seq_length  # saved in tokenizer_config.json; predict reads it back
    train, dev = encode_splits(model, tokenizer, task, cfg, say)
    n_batches = math.ceil(len(train.features) / cfg.batch_size)
    total_steps = math.ceil(n_batches / cfg.grad_accum) * cfg.epochs
    warmup_steps = max(1, int(cfg.warmup * total_steps) if cfg.warmup < 1 else min(int(cfg.warmup), total_steps))
    optimizer = torch.optim.AdamW(
        layerwise_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, eps=1e-6, fused=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup_steps, total_steps))
    if main:
        config = {"task": task.name, "init": str(init), "random_init": random_init, **asdict(cfg), "processes": world}
        atomic_write_text(out / "finetune_config.json", json.dumps(config, indent=2) + "\n")
    parts = (model, tokenizer, tokenizer.pad_token_id, train, dev, qa, optimizer, schedule, total_steps, say)
    return FinetuneRun(out, rank, world, device, use_bf16, *parts, distiller=distiller)


def encode_splits(model, tokenizer, task: TaskData, cfg: FinetuneConfig, say):
    """The train and dev splits as features, saying what truncation and windowing did to them."""

    def encode(examples):
        return encode_split(model, tokenizer, examples, cfg.max_seq_length, cfg.stride, cfg.max_query_length)

    train = encode(task.train)
    dev = encode(task.dev) if task.dev else None
    for name, enc, examples in (("train", train, task.train), ("dev", dev, task.dev)):
        if enc is None:
            continue
        if enc.truncated and task.kind == "qa":
            say(f"{name}: {enc.truncated} answers are longer than a window and train as 'no answer here'")
        elif enc.truncated:
            say(f"{name}: {enc.truncated} of {len(examples)} texts truncated to {cfg.max_seq_length} tokens")
        if task.kind in ("tagging", "qa") and len(enc.features) > len(examples):
            say(f"{name}: {len(examples)} examples read in {len(enc.features)} windows of {cfg.max_seq_length}")
    return train, dev


def train_epoch(run: FinetuneRun, cfg: FinetuneConfig, kind: str, epoch: int, batches: list, log, bar) -> float:
    """One epoch of optimizer steps, each over up to `grad_accum` micro-batches (fewer at the end of the epoch);
    the mean training loss over its units."""
    run.model.train()
    epoch_loss, epoch_units = 0.0, 0
    window = {"loss": 0.0, "units": 0, "sequences": 0, "t0": time.perf_counter()}
    for first in range(0, len(batches), cfg.grad_accum):
        micro = [
            collate([run.train.features[i] for i in idx], run.pad_id) for idx in batches[first : first + cfg.grad_accum]
        ]
        window["sequences"] += sum(len(b["input_ids"]) for b in micro)
        step_loss, units, grad_norm = finetune_step(run, cfg, kind, micro)
        run.step += 1
        follow_load()  # a step boundary: the thread count may follow the load (bertkit.threads)
        bar.update(1)
        if not (math.isfinite(step_loss) and torch.isfinite(grad_norm)):
            skip_bad_step(run, step_loss)
            continue
        run.bad_steps = 0
        run.optimizer.step()
        run.schedule.step()
        run.optimizer.zero_grad(set_to_none=True)
        epoch_loss, epoch_units = epoch_loss + step_loss, epoch_units + units
        window["loss"] += step_loss
        window["units"] += units
        if log is not None and (run.step % cfg.log_every == 0 or run.step == run.total_steps):  # ---- log
            row = {
                "step": run.step,
                "epoch": epoch,
                "lr": run.schedule.get_last_lr()[0],
                "loss": window["loss"] / max(1, window["units"]),
                "grad_norm": float(grad_norm),
                "sequences_per_s": window["sequences"] / (time.perf_counter() - window["t0"]),
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{row['loss']:.4f}", seq_s=f"{row['sequences_per_s']:.0f}")
            window = {"loss": 0.0, "units": 0, "sequences": 0, "t0": time.perf_counter()}
    return epoch_loss / max(1, epoch_units)


def finetune_step(run: FinetuneRun, cfg: FinetuneConfig, kind: str, micro: list[dict]):
    """Forward and backward over the step's micro-batches, the loss a mean over the units of the whole step
    (sequences, or tokens for tagging); returns (summed loss over all ranks, units, clipped gradient norm)."""
    units = sum(loss_units(kind, b) for b in micro)  # what the step's loss is a mean over
    step_loss = 0.0
    for batch in micro:
        batch = rows_of(batch, run.rank, run.world)
        if not len(batch["input_ids"]):  # this rank's slice of a short last batch is empty
            continue
        batch = {k: v.to(run.device) for k, v in batch.items()}
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
            logits = run.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if run.distiller is None:
            loss = run.model.loss_sum(logits, batch, cfg.label_smoothing)
        else:
            loss = run.distiller.loss_sum(run.model, logits, batch, cfg.label_smoothing)
        (loss / max(1, units)).backward()
        step_loss += loss.item()
    step_loss = all_reduce_sum([step_loss], run.world, run.device)[0]
    params = [p for p in run.model.parameters() if p.requires_grad]
    all_reduce_gradients(params, run.world)  # every rank then takes the same update
    return step_loss, units, torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)


def skip_bad_step(run: FinetuneRun, step_loss: float) -> None:
    """A NaN or infinite loss would poison the weights and Adam's moments: skip the update (the schedule moves
    on), and stop after several in a row, as pretraining does."""
    skip_update(run.optimizer, run.schedule)
    run.bad_steps += 1
    run.say(
        f"warning: step {run.step}: loss {step_loss}; the update is skipped ({run.bad_steps} in a row)",
        file=sys.stderr,
    )
    if run.bad_steps >= MAX_BAD_STEPS:
        raise BertkitError(
            f"the loss was not finite for {run.bad_steps} steps in a row (up to step {run.step}); the best "
            f"epoch so far is in {run.out / 'model'}: lower --lr, or check the data"
        )


def qa_options(task: TaskData, cfg: FinetuneConfig):
    """How QA answers are read: with unanswerable questions in the data (SQuAD 2.0) and no threshold given,
    an answer is empty when the null score wins (threshold 0)."""
    qa = cfg.qa
    if task.kind == "qa" and qa.null_threshold is None and any(not ex.answers for ex in task.train + task.dev):
        qa = replace(qa, null_threshold=0.0)
    return qa


def score_test(run: dict, task: TaskData, cfg: FinetuneConfig, device=None) -> dict:
    """Score a finished run's kept model on the test split, once, and record it in the run's summary.json.
    Under torchrun every rank calls it (each scores a slice); rank 0 writes."""
    rank, world = distributed()
    barrier(world)  # rank 0 has written the model folder
    device = default_device(device)
    use_bf16 = choose_precision(cfg.precision, device)[0]
    model, tok = load_task_model(run["model"])
    model.to(device)
    test = encode_split(model, tok, task.test, cfg.max_seq_length, cfg.stride, cfg.max_query_length)
    run["test"] = evaluate(
        model, test, tok.pad_token_id, bf16=use_bf16, qa=qa_options(task, cfg), shared=True, keep_predictions=True
    )
    predicted = run["test"].pop("predictions", None)  # classification and tagging: for `bertkit compare`
    if rank == 0:
        if predicted is not None:
            write_predictions(Path(run["model"]).parent, test.gold, predicted)
        atomic_write_text(Path(run["model"]).parent / "summary.json", json.dumps(run, indent=2) + "\n")
    return run


def finetune_seeds(
    task: TaskData, init: str | Path, cfg: FinetuneConfig, seeds: list[int], random_init: bool = False
) -> dict:
    """One run per seed (OUT/seed-N/ when there are several), and the mean and max of the main metric."""
    if not seeds:
        raise BertkitError("--seeds needs at least one seed")
    for s in seeds:
        check_seed(s, "--seeds")
    if len(seeds) == 1:
        run = finetune(task, init, replace(cfg, seed=seeds[0]), random_init)
        return {"task": task.name, "metric": run["metric"], "runs": [run], **_aggregate([run])}
    runs = [
        finetune(task, init, replace(cfg, seed=s, out_dir=str(Path(cfg.out_dir) / f"seed-{s}")), random_init)
        for s in seeds
    ]
    summary = {"task": task.name, "metric": runs[0]["metric"], "runs": runs, **_aggregate(runs)}
    _write_summary(Path(cfg.out_dir), summary)
    return summary


def finetune_grid(
    task: TaskData, init: str | Path, cfg: FinetuneConfig, lrs: list[float], seeds: list[int], random_init=False
) -> dict:
    """The learning rate chosen on the dev split: one `finetune_seeds` per rate (OUT/lr-X/ when there are
    several) without the test split, the rate with the best mean dev score kept, and only its runs scored on
    test — the test split is read once, by the chosen setting."""
    if not lrs:
        raise BertkitError("--lr needs at least one learning rate")
    if len(lrs) == 1:
        return finetune_seeds(task, init, replace(cfg, lr=lrs[0]), seeds, random_init) | {"lr": lrs[0]}
    if not task.dev:
        raise BertkitError("several --lr values are chosen between on the dev split, and this task has none")
    tried = {}
    for lr in lrs:
        sub = replace(cfg, lr=lr, out_dir=str(Path(cfg.out_dir) / f"lr-{lr:g}"))
        tried[lr] = (sub, finetune_seeds(replace(task, test=[]), init, sub, seeds, random_init))
    metric = next(iter(tried.values()))[1]["metric"]
    best = max(lrs, key=lambda lr: tried[lr][1]["dev"]["mean"])  # the first of equal means: the lowest listed
    sub, chosen = tried[best]
    if task.test:
        chosen["runs"] = [score_test(run, task, sub) for run in chosen["runs"]]
        chosen |= _aggregate(chosen["runs"])
        if len(seeds) > 1:
            _write_summary(Path(sub.out_dir), chosen)
    summary = chosen | {"lr": best, "grid": {f"{lr:g}": tried[lr][1]["dev"]["mean"] for lr in lrs}, "metric": metric}
    _write_summary(Path(cfg.out_dir), summary)
    return summary


def _write_summary(out: Path, summary: dict) -> None:
    if distributed()[0] == 0:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _quiet(*args, **kwargs) -> None:
    """`print` on ranks other than 0."""


def rows_of(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """Rank r of N takes rows [r·n/N, (r+1)·n/N) of a batch of n: disjoint slices that cover it, as even as n
    allows (some may be empty when n < N)."""
    if world == 1:
        return batch
    n = len(batch["input_ids"])
    return {k: v[rank * n // world : (rank + 1) * n // world] for k, v in batch.items()}


def _aggregate(runs: list[dict]) -> dict:
    metric, result = runs[0]["metric"], {}
    for split in ("dev", "test"):
        values = [r[split][metric] for r in runs if metric in r[split]]
        if values:
            result[split] = {"mean": sum(values) / len(values), "max": max(values), "values": values}
    return result


def plot_curves(log_path: Path, png_path: Path, metric: str) -> None:
    """Training loss by step with the dev loss by epoch, and the dev metric by epoch, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "eval" not in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if evals and "loss" in evals[0]:
        ax[0].plot([e["step"] for e in evals], [e["loss"] for e in evals], "o-", label="dev")
    ax[0].set(title="loss", xlabel="step")
    ax[0].legend()
    if evals and metric in evals[0]:
        ax[1].plot([e["epoch"] for e in evals], [e[metric] for e in evals], "o-")
    ax[1].set(title=f"dev {metric}", xlabel="epoch", ylim=(-1, 1) if metric == "pearson" else (0, 1))
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")  # a run stopped while drawing leaves the old plot whole
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png_path)
