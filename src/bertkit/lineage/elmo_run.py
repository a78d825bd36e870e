"""ELMo's two stages, each a run folder like pretraining's.

`train_elmo`: the biLM on a corpus's sentences (characters), Adam with warm-up and linear decay, a held-out
1% of sentences scored every `eval_every` steps (forward and backward loss, perplexity), checkpoints and exact
resume (weights, optimizer, data position and every RNG), progress, `metrics.jsonl`, `curves.png`; the model in
OUT/model (`elmo.safetensors`, `elmo_config.json`, `vocab.txt`).

`finetune_elmo`: a built-in task (or any the fine-tuning readers load) on the frozen biLM, as the paper uses
ELMo: only the scalar mix (softmax-normalised layer weights s and the scale γ) and a small head learn — for
classification the mean of the mixed vectors over the text's characters into a linear layer; for tagging a
linear layer per character. The best epoch on dev is kept and the test split scored once, with
test_predictions.jsonl that `bertkit compare` reads beside any fine-tuned BERT's.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from bertkit.checkpoints import rng_state, save_checkpoint
from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.lineage.elmo import BiLM, CharVocab, ElmoConfig, ScalarMix, batch, load_bilm, save_bilm
from bertkit.pretrain.runs import check_out_dir, check_resume, resume_run
from bertkit.threads import follow_load
from bertkit.training import linear_schedule

if TYPE_CHECKING:
    from bertkit.finetune.tasks import TaskData


def corpus_sentences(corpus: list[str], max_chars: int) -> list[str]:
    """Every sentence of the corpus, whitespace removed, long ones cut into pieces of at most `max_chars`."""
    from bertkit.pretrain.corpus import read_documents

    found = []
    for document in read_documents(corpus):
        for sentence in document:
            text = "".join(sentence.split())
            found += [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    if not found:
        raise BertkitError(f"the corpus {' '.join(corpus)} holds no text to train on")
    return found


def _held_out(n: int, seed: int) -> np.ndarray:
    """A fixed 1% of sentence indices (at least one, at most 2,000) for the held-out loss."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    return np.sort(order[: max(1, min(2000, n // 100))])


def train_elmo(
    out: str | Path,
    corpus: list[str],
    config: dict,
    steps: int,
    batch_size: int = 32,
    max_chars: int = 62,
    lr: float = 1e-3,
    warmup: int = 100,
    min_count: int = 2,
    seed: int = 0,
    eval_every: int = 200,
    save_every: int = 200,
    log_every: int = 10,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    from tqdm import tqdm

    from bertkit.pretrain.plots import plot_metrics

    out = Path(out)
    settings = {"corpus": corpus, **config, "batch_size": batch_size, "max_chars": max_chars, "lr": lr}
    settings |= {"warmup": warmup, "min_count": min_count, "seed": seed}
    check_out_dir(out, resume)
    check_resume(out, steps, settings)
    sentences = corpus_sentences(corpus, max_chars)
    held = _held_out(len(sentences), seed)
    is_held = np.zeros(len(sentences), bool)
    is_held[held] = True
    train_idx = np.flatnonzero(~is_held)
    if len(train_idx) == 0:
        raise BertkitError(f"the corpus {' '.join(corpus)} has {len(sentences)} sentence(s): too few to train on")
    vocab = CharVocab.build([sentences[i] for i in train_idx], min_count)
    torch.manual_seed(seed)
    model = BiLM(ElmoConfig(vocab_size=len(vocab), **config))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, steps))
    step = resume_run(out, resume, steps, {"model": model, "optimizer": optimizer, "schedule": schedule})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "train_config.json", json.dumps({"settings": settings}, indent=2, ensure_ascii=False))
    per_epoch = max(1, len(train_idx) // batch_size)
    bar = tqdm(total=steps, initial=step, unit="step", disable=not progress, file=sys.stderr, desc="ELMo biLM")
    log = open(out / "metrics.jsonl", "a", encoding="utf-8")
    last_eval: dict = {}
    try:
        while step < steps:
            epoch, position = divmod(step, per_epoch)
            order = np.random.default_rng([seed, epoch]).permutation(train_idx)
            rows = order[position * batch_size : (position + 1) * batch_size]
            ids, lengths = batch(vocab, [sentences[i] for i in rows], max_chars)
            model.train()
            start = time.perf_counter()
            loss, parts = model.loss(ids, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            optimizer.step()
            schedule.step()
            step += 1
            follow_load()  # a step boundary: the thread count may follow the load (bertkit.threads)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if step % log_every == 0 or step == steps:
                seconds = max(time.perf_counter() - start, 1e-9)  # this step's
                row = {"step": step, "epoch": epoch + 1, "loss": float(loss.detach()), **parts, "grad_norm": grad_norm}
                row |= {"lr": schedule.get_last_lr()[0], "tokens_per_s": int(lengths.sum()) / seconds}
                row["seconds_per_step"] = seconds
                log.write(json.dumps(row) + "\n")
            if step % eval_every == 0 or step == steps:
                last_eval = held_out_loss(model, vocab, [sentences[i] for i in held], max_chars)
                log.write(json.dumps({"eval": {"step": step, **last_eval}}) + "\n")
                bar.write(
                    f"step {step}: held-out loss {last_eval['loss']:.3f} (perplexity {last_eval['perplexity']:.1f})"
                )
            log.flush()
            if step % save_every == 0 or step == steps:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                state |= {"schedule": schedule.state_dict(), "rng": rng_state(), "step": step}
                save_checkpoint(out, step, lambda f: save_bilm(f, model, vocab), state, keep=2)
    finally:
        bar.close()
        log.close()
    save_bilm(out / "model", model.eval(), vocab)
    summary = {"steps": steps, "vocab": len(vocab), "sentences": len(sentences), "held_out": last_eval}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_metrics(out / "metrics.jsonl", out / "curves.png")
    return summary


@torch.no_grad()
def held_out_loss(model: BiLM, vocab: CharVocab, texts: list[str], max_chars: int) -> dict:
    model.eval()
    totals = {"loss": 0.0, "forward_loss": 0.0, "backward_loss": 0.0}
    weight = 0
    for i in range(0, len(texts), 64):
        ids, lengths = batch(vocab, texts[i : i + 64], max_chars)
        loss, parts = model.loss(ids, lengths)
        n = int(lengths.sum() - len(lengths))  # targets per direction
        totals["loss"] += float(loss.detach()) * n
        totals["forward_loss"] += parts["forward_loss"] * n
        totals["backward_loss"] += parts["backward_loss"] * n
        weight += n
    result = {k: v / max(weight, 1) for k, v in totals.items()}
    result["perplexity"] = math.exp(result["loss"])
    return result


# ------------------------------------------------------------------------------------------------ fine-tuning
class ElmoTask(nn.Module):
    """The frozen biLM, a scalar mix and a head: a text label (mean of the mix) or a tag per character."""

    def __init__(self, bilm: BiLM, num_labels: int, tagging: bool, dropout: float = 0.1):
        super().__init__()
        self.bilm = bilm.requires_grad_(False)
        self.mix = ScalarMix(bilm.config.num_layers + 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * bilm.config.hidden_size, num_labels)
        self.tagging = tagging

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, C) logits, or (B, T-2, C) per character (<S> and </S> dropped) for tagging."""
        self.bilm.eval()  # frozen, dropout off: the representation is the pretrained one
        with torch.no_grad():
            layers = self.bilm.layers(ids, lengths)
        mixed = self.dropout(self.mix(layers))[:, 1:-1]  # (B, T-2, 2H): the characters
        if self.tagging:
            return self.head(mixed)
        real = (torch.arange(mixed.shape[1])[None, :] < (lengths - 2)[:, None]).float()[..., None]
        return self.head((mixed * real).sum(1) / real.sum(1).clamp(min=1))


def finetune_elmo(
    model_dir: str | Path,
    task: TaskData,
    out: str | Path,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float | list[float] = 1e-3,
    max_chars: int = 126,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """`task`'s splits as `bertkit finetune` reads them (the first N examples with --max-train-examples and
    --max-eval-examples), so its test predictions pair with a fine-tuned model's in `bertkit compare`."""
    from tqdm import tqdm

    from bertkit.finetune.metrics import accuracy, entity_scores, word_scores
    from bertkit.finetune.predict import write_predictions

    out = Path(out)
    task_name = task.name
    if (out / "summary.json").exists():
        raise BertkitError(f"--out {out} already holds a fine-tuned run; choose another --out")
    bilm, vocab = load_bilm(model_dir)
    if task.kind not in ("classification", "tagging"):
        raise BertkitError(f"ELMo fine-tunes classification and tagging tasks; {task_name} is {task.kind}")
    tagging = task.kind == "tagging"
    label_index = {label: i for i, label in enumerate(task.labels)}
    train = list(task.train)
    lrs = lr if isinstance(lr, list) else [lr]
    if len(set(lrs)) < len(lrs):
        raise BertkitError(f"--lr {' '.join(f'{x:g}' for x in lrs)}: a rate given twice; give distinct rates")

    def text_of(ex) -> str:
        return "".join(ex.words) if tagging else ex.text

    def encode(examples):
        ids, lengths = batch(vocab, [text_of(ex) for ex in examples], max_chars)
        if not tagging:
            return ids, lengths, torch.tensor([label_index[ex.label] for ex in examples])
        tags = torch.full((len(examples), ids.shape[1] - 2), -100)
        for r, ex in enumerate(examples):
            kept = [label_index[t] for w, t in zip(ex.words, ex.tags, strict=True) if not w.isspace()][:max_chars]
            tags[r, : len(kept)] = torch.tensor(kept)
        return ids, lengths, tags

    def predict(examples) -> list:
        model.eval()
        found = []
        with torch.no_grad():
            for i in range(0, len(examples), 64):
                part = examples[i : i + 64]
                ids, lengths, _ = encode(part)
                logits = model(ids, lengths)
                if not tagging:
                    found += [task.labels[j] for j in logits.argmax(-1).tolist()]
                    continue
                best = logits.argmax(-1).tolist()
                for r, ex in enumerate(part):  # characters past max_chars are tagged O (outside)
                    n = min(len(ex.words), max_chars)
                    found.append([task.labels[j] for j in best[r][:n]] + ["O"] * (len(ex.words) - n))
        return found

    def score(examples, predicted) -> float:
        if not tagging:
            return accuracy([ex.label for ex in examples], predicted)
        measure = word_scores if task.scheme == "bmes" else entity_scores
        return measure([ex.tags for ex in examples], predicted)["f1"]

    out.mkdir(parents=True, exist_ok=True)
    steps = len(lrs) * epochs * math.ceil(len(train) / batch_size)
    bar = tqdm(total=steps, unit="step", disable=not progress, file=sys.stderr, desc=f"ELMo {task_name}")
    tried = {}  # lr -> (best dev, its weights, history): each rate trained from the same seed
    for rate in lrs:
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        model = ElmoTask(bilm, len(task.labels), tagging)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=rate)
        tried[rate] = _train_head(model, optimizer, train, rng, epochs, batch_size, encode, predict, score, task, bar)
    bar.close()
    chosen = max(lrs, key=lambda rate: tried[rate][0])  # on dev; the first of equal scores
    best, state, history = tried[chosen]
    model.load_state_dict(state)
    test_pred = predict(task.test)  # once, with the rate and epoch chosen on dev
    test = score(task.test, test_pred)
    gold = [ex.tags if tagging else ex.label for ex in task.test]
    write_predictions(out, gold, test_pred)
    summary = {"task": task_name, "model": str(model_dir), "lr": chosen, "dev": best, "test": test, "epochs": history}
    summary["grid"] = {f"{rate:g}": tried[rate][0] for rate in lrs}
    summary["metric"] = "f1" if tagging else "accuracy"
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _train_head(model, optimizer, train, rng, epochs, batch_size, encode, predict, score, task, bar) -> tuple:
    """The mix and the head trained for `epochs`; (the best dev score, the weights at that epoch, the history)."""
    best, history = (-1.0, None), []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_size):
            ids, lengths, gold = encode([train[j] for j in order[i : i + batch_size]])
            logits = model(ids, lengths)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=-100
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            follow_load()  # a step boundary: the thread count may follow the load (bertkit.threads)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        dev = score(task.dev, predict(task.dev))
        weights = model.mix.weights().detach().tolist()
        history.append({"epoch": epoch + 1, "dev": dev, "mix": weights, "gamma": float(model.mix.gamma.detach())})
        bar.write(f"epoch {epoch + 1}: dev {dev:.4f}, layer weights {[round(w, 3) for w in weights]}")
        if dev > best[0]:
            best = (dev, {k: v.clone() for k, v in model.state_dict().items()})
    return best[0], best[1], history
