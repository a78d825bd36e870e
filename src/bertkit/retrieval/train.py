"""`bertkit embed-train`: a sentence-embedding model trained from any folder `bertkit embed` reads, written as a
sentence-transformers folder.

A run folder like pretraining's: OUT/model (the sentence-transformers folder), metrics.jsonl, curves.png,
summary.json, train_config.json, checkpoints/ (resume with --resume: weights, optimizer, schedule, data
position and every random state, so a resumed run ends with the same bits as one that never stopped).

The loop: texts tokenized once; each epoch a seeded permutation cut into batches in which no text appears twice
(`data.no_duplicate_batches`); per batch the loss's groups of texts (queries, positives, negatives; or the same
texts twice for SimCSE; or the two sides of scored pairs) embedded by `SentenceModel`, the loss computed, one
AdamW step (weight decay 0.01 on matrices, warm-up then linear decay, gradients clipped at 1) — with
`cache_chunk`, the GradCache step (cached.py), so a batch of any size fits. bf16 autocast where the CPU has it
(`--precision auto`). After each epoch the dev set is scored: a BEIR folder or pairs file by retrieval (nDCG@10,
recall@10, MRR@10 with the model's own vectors), scored pairs by Spearman's rank correlation; the last epoch's
model is the one saved (the dev scores are for choosing settings, not epochs).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertkit.checkpoints import rng_state, save_checkpoint
from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.pretrain.runs import check_out_dir, check_resume, resume_run
from bertkit.retrieval.cached import cached_step, plain_step
from bertkit.retrieval.data import no_duplicate_batches, read_pairs, read_scored_pairs, read_texts
from bertkit.retrieval.losses import cosent_loss, in_batch_loss
from bertkit.retrieval.sentence_model import SentenceModel
from bertkit.threads import follow_load
from bertkit.training import check_finite, choose_precision, linear_schedule, param_groups, skip_update

LOSSES = ("in-batch", "simcse", "cosent")


@dataclass
class EmbedTrainConfig:
    loss: str = "in-batch"
    epochs: int = 1
    batch_size: int = 64
    lr: float = 5e-5
    warmup: float = 0.1  # a fraction of all steps
    weight_decay: float = 0.01
    scale: float = 20.0
    symmetric: bool = False
    negatives_per_query: int = 1
    cache_chunk: int = 0  # 0: no GradCache
    max_seq_length: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    precision: str = "auto"
    seed: int = 0
    save_every: int = 200
    log_every: int = 10
    max_examples: int | None = None  # the first N examples of the file


def read_training(path: str, loss: str, columns: dict) -> tuple[list, list[tuple[str, ...]]]:
    """(examples, the texts of each example): pairs, texts or scored pairs, by loss."""
    if loss == "in-batch":
        pairs = read_pairs(
            path,
            columns.get("query", "query"),
            columns.get("positive", "positive"),
            columns.get("negatives", "negatives"),
        )
        return pairs, [(p.query, p.positive, *p.negatives) for p in pairs]
    if loss == "simcse":
        texts = read_texts(path)
        return texts, [(t,) for t in texts]
    if loss == "cosent":
        pairs = read_scored_pairs(
            path, columns.get("a", "sentence1"), columns.get("b", "sentence2"), columns.get("score", "score")
        )
        return pairs, [(p.a, p.b) for p in pairs]
    raise BertkitError(f"--loss {loss!r}: use one of {', '.join(LOSSES)}")


def train_embeddings(
    model_dir: str,
    train_file: str,
    out: str | Path,
    cfg: EmbedTrainConfig,
    dev=None,
    columns: dict | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train, save OUT/model, return the summary. `dev`: a `RetrievalSet` or a list of `ScoredPair`, or None."""
    from tqdm import tqdm

    from bertkit.pretrain.plots import plot_metrics

    out = Path(out)
    examples, keys = read_training(train_file, cfg.loss, columns or {})
    if cfg.max_examples is not None:
        examples, keys = examples[: cfg.max_examples], keys[: cfg.max_examples]
    if cfg.loss != "cosent" and len(examples) < 2:
        raise BertkitError(f"{train_file}: {len(examples)} example(s); in-batch negatives need at least 2")
    # batches without repeated texts: their number may differ from one epoch's order to the next
    epoch_ends = np.cumsum([len(_epoch_batches(keys, e, cfg)) for e in range(cfg.epochs)]).tolist()
    steps = epoch_ends[-1]
    settings = {"model": str(model_dir), "train": str(train_file), **vars(cfg)}
    for key in ("save_every", "log_every"):
        settings.pop(key)
    check_out_dir(out, resume)
    check_resume(out, steps, settings)
    torch.manual_seed(cfg.seed)
    model = SentenceModel.from_folder(model_dir, pooling=cfg.pooling, normalize=cfg.normalize)
    if cfg.max_seq_length is not None:
        if not 2 < cfg.max_seq_length <= model.encoder.config.max_length:
            raise BertkitError(
                f"--max-seq-length {cfg.max_seq_length}: the model takes 3..{model.encoder.config.max_length} tokens"
            )
        model.max_seq_length = cfg.max_seq_length
    device = next(model.parameters()).device
    use_bf16, precision_note = choose_precision(cfg.precision, device)
    ids = _tokenize(model, keys)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    warmup = int(cfg.warmup * steps) if cfg.warmup < 1 else int(cfg.warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, steps))
    step = resume_run(out, resume, steps, {"model": model, "optimizer": optimizer, "schedule": schedule})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "train_config.json", json.dumps({"settings": settings}, indent=2, ensure_ascii=False))
    print(
        f"{len(examples)} training examples, {steps} steps in {cfg.epochs} epoch(s); loss {cfg.loss}; "
        f"{model.pooling} pooling{', normalised' if model.normalize else ''}; {precision_note}",
        file=sys.stderr,
    )
    pad_id = model.tokenizer.pad_token_id
    bar = tqdm(total=steps, initial=step, unit="step", disable=not progress, file=sys.stderr, desc="embed-train")
    log = open(out / "metrics.jsonl", "a", encoding="utf-8")
    dev_scores: list[dict] = []
    batches: tuple[int, list] = (-1, [])
    try:
        while step < steps:
            epoch = next(e for e, end in enumerate(epoch_ends) if step < end)
            if batches[0] != epoch:
                batches = (epoch, _epoch_batches(keys, epoch, cfg))
            batch = batches[1][step - (epoch_ends[epoch - 1] if epoch else 0)]
            groups, loss_fn = _groups(cfg, ids, [examples[i] for i in batch])
            model.train()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                if cfg.cache_chunk:
                    loss = cached_step(model, groups, loss_fn, pad_id, cfg.cache_chunk)
                else:
                    loss = plain_step(model, groups, loss_fn, pad_id)
            if not math.isfinite(loss):
                skip_update(optimizer, schedule)
                grad_norm = math.nan
            else:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                schedule.step()
            step += 1
            follow_load()  # a step boundary: the thread count may follow the load (bertkit.threads)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if step % cfg.log_every == 0 or step == steps:
                seconds = max(time.perf_counter() - start, 1e-9)
                tokens = sum(len(x) for g in groups for x in g)
                row = {"step": step, "epoch": epoch + 1, f"{cfg.loss}_loss": loss, "grad_norm": grad_norm}
                row |= {"lr": schedule.get_last_lr()[0], "tokens_per_s": tokens / seconds, "seconds_per_step": seconds}
                log.write(json.dumps(row) + "\n")
            if dev is not None and step in epoch_ends:
                scores = evaluate_dev(model, dev)
                dev_scores.append({"step": step, **scores})
                log.write(json.dumps({"eval": {"step": step, **scores}}) + "\n")
                bar.write(f"step {step}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            log.flush()
            if step % cfg.save_every == 0 and step < steps:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                state |= {"schedule": schedule.state_dict(), "rng": rng_state(), "step": step}
                save_checkpoint(out, step, model.save, state, keep=2)
    finally:
        bar.close()
        log.close()
    check_finite(model, "after training", "the model was not saved")
    model.eval().save(out / "model")
    summary = {
        "steps": steps,
        "examples": len(examples),
        "loss": cfg.loss,
        "dev": dev_scores[-1] if dev_scores else None,
    }
    summary |= {"pooling": model.pooling, "normalize": model.normalize, "max_seq_length": model.max_seq_length}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_metrics(out / "metrics.jsonl", out / "curves.png")
    return summary


def _tokenize(model: SentenceModel, keys: list[tuple[str, ...]]) -> dict[str, list[int]]:
    texts = sorted({t for k in keys for t in k})
    return dict(zip(texts, model.tokenize(texts), strict=True))


def _epoch_batches(keys: list[tuple[str, ...]], epoch: int, cfg: EmbedTrainConfig) -> list[list[int]]:
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(keys)).tolist()
    if cfg.loss == "cosent":  # scored pairs: duplicates are harmless (no in-batch negatives)
        return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    if cfg.loss == "in-batch":  # the texts a batch uses: query, positive and the negatives taken
        keys = [k[: 2 + cfg.negatives_per_query] for k in keys]
    return no_duplicate_batches(keys, order, cfg.batch_size)


def _groups(cfg: EmbedTrainConfig, ids: dict, batch: list):
    """The batch's groups of token ids and the loss over their vectors."""
    if cfg.loss == "in-batch":
        queries = [ids[p.query] for p in batch]
        positives = [ids[p.positive] for p in batch]
        negatives = [ids[n] for p in batch for n in p.negatives[: cfg.negatives_per_query]]

        def loss_fn(q, p, n):
            return in_batch_loss(q, p, n, scale=cfg.scale, symmetric=cfg.symmetric)

        return [queries, positives, negatives], loss_fn
    if cfg.loss == "simcse":
        texts = [ids[t] for t in batch]

        def loss_fn(a, b):
            return in_batch_loss(a, b, scale=cfg.scale, symmetric=cfg.symmetric)

        return [texts, texts], loss_fn
    scores = torch.tensor([p.score for p in batch])

    def loss_fn(a, b):
        return cosent_loss(a, b, scores, scale=cfg.scale)

    return [[ids[p.a] for p in batch], [ids[p.b] for p in batch]], loss_fn


def evaluate_dev(model: SentenceModel, dev) -> dict[str, float]:
    """nDCG@10, recall@10, MRR@10 on a `RetrievalSet`; Spearman on scored pairs."""
    from bertkit.retrieval.benchmark import RetrievalSet

    embedder = model.embedder()
    model.eval()
    if isinstance(dev, RetrievalSet):
        from bertkit.retrieval.metrics import mean_metrics
        from bertkit.retrieval.search import dense_rankings, score_rankings

        rankings, _ = dense_rankings(embedder, dev)
        means = mean_metrics(score_rankings(rankings, dev))
        return {"ndcg_at_10": means["ndcg@10"], "recall_at_10": means["recall@10"], "mrr_at_10": means["mrr@10"]}
    from bertkit.finetune.metrics import spearman

    a = embedder.encode([p.a for p in dev], normalize=True)
    b = embedder.encode([p.b for p in dev], normalize=True)
    return {"spearman": spearman((a * b).sum(1).tolist(), [p.score for p in dev])}
