"""A word2vec run: corpus → words → vocabulary → chunks of training, with progress, log, curves, checkpoints
and exact resume, in a run folder like pretraining's.

OUT/ holds `vectors.txt` and `vectors.bin` (the word2vec formats, input vectors, most frequent word first),
`vocab.txt` (word and count), `metrics.jsonl` (a row per chunk: loss per word, learning rate, words/s),
`curves.png`, `train_config.json`, `summary.json` and `checkpoints/` (the newest two: the engine's tables and,
for gensim, its random state). Units: characters (`char`: every non-space character) or jieba words (`word`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from bertkit.checkpoints import load_latest, save_checkpoint
from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.lineage.vectors import WordVectors
from bertkit.lineage.word2vec import Corpus, TorchEngine, Vocab, Word2VecSettings, chunks, learning_rate
from bertkit.pretrain.runs import check_out_dir, check_resume, truncate_log

UNITS = ("char", "word")
ENGINES = ("auto", "gensim", "torch")
ENGINE_FILE = "engine.safetensors"


def read_units(corpus: list[str], unit: str) -> list[list[str]]:
    """The corpus's sentences as lists of units: characters (no whitespace) or jieba words."""
    from bertkit.pretrain.corpus import read_documents
    from bertkit.pretrain.masking import segment_words

    sentences = []
    for document in read_documents(corpus):
        for sentence in document:
            units = [c for c in sentence if not c.isspace()] if unit == "char" else segment_words(sentence)
            units = [u for u in units if u.strip() and not any(c.isspace() for c in u)]
            if units:
                sentences.append(units)
    if not sentences:
        raise BertkitError(f"the corpus {' '.join(corpus)} holds no text to train on")
    return sentences


def make_engine(name: str, settings: Word2VecSettings, vocab: Vocab, threads: int):
    from bertkit.lineage import gensim_engine

    if name == "gensim" or (name == "auto" and gensim_engine.available()):
        return gensim_engine.GensimEngine(settings, vocab, threads)
    return TorchEngine(settings, vocab)


def train_word2vec(
    out: str | Path,
    corpus: list[str],
    unit: str,
    settings: Word2VecSettings,
    engine: str = "auto",
    threads: int = 2,
    resume: bool = False,
    save_every: int = 10,
    progress: bool = True,
) -> dict:
    """Train, or continue (`resume`) the run in `out`; returns the summary."""
    import torch
    from safetensors.numpy import load_file, save_file
    from tqdm import tqdm

    out = Path(out)
    run_settings = {"corpus": corpus, "unit": unit, "engine": engine, **settings.to_dict()}
    check_out_dir(out, resume)
    check_resume(out, 10**18, run_settings)  # the steps follow from --epochs, which must match
    sentences = read_units(corpus, unit)
    vocab = Vocab.build(sentences, settings.min_count)
    data = Corpus.encode(sentences, vocab)
    plan = chunks(data.sents, len(sentences), settings.chunk_words)
    torch.set_num_threads(threads)
    trainer = make_engine(engine, settings, vocab, threads)
    steps, per_epoch = settings.epochs * len(plan), len(data.ids)
    total = float(per_epoch * settings.epochs)
    step = 0
    state, folder, warnings = load_latest(out) if resume else (None, None, [])
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if state is not None:
        if state.get("engine") != trainer.name:
            raise BertkitError(f"--resume: the run in {out} trained with the {state.get('engine')} engine; pass it")
        trainer.load_state(load_file(str(folder / ENGINE_FILE)))
        step = state["step"]
        truncate_log(out / "metrics.jsonl", step)
        print(f"resuming from {folder} (step {step} of {steps})", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    config = {"settings": run_settings, "engine": trainer.name, "threads": threads, "vocab": len(vocab.words)}
    atomic_write_text(out / "train_config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    bar = tqdm(
        total=int(total),
        initial=step // len(plan) * per_epoch + sum(c.stop - c.start for c in plan[: step % len(plan)]),
        unit="word",
        unit_scale=True,
        disable=not progress,
        file=sys.stderr,
        desc=f"word2vec {settings.mode}",
    )
    start_time, trained = time.perf_counter(), 0
    log = open(out / "metrics.jsonl", "a", encoding="utf-8")
    try:
        while step < steps:
            epoch, index = divmod(step, len(plan))
            chunk = plan[index]
            words = chunk.stop - chunk.start
            done = epoch * per_epoch + chunk.start
            t = time.perf_counter()
            loss = trainer.train_chunk(data, chunk, epoch, index, done, total)
            seconds = time.perf_counter() - t
            step += 1
            trained += words
            row = {"step": step, "epoch": epoch + 1, "sgns_loss": loss / max(words, 1)}
            row |= {"lr": learning_rate(settings, done + words, total), "tokens_per_s": words / max(seconds, 1e-9)}
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.update(words)
            bar.set_postfix(loss=f"{row['sgns_loss']:.3f}", epoch=epoch + 1)
            if step % save_every == 0 or step == steps:
                meta = {"step": step, "engine": trainer.name}
                save_checkpoint(out, step, lambda f: _write_engine(f, trainer, save_file), meta, keep=2)
    finally:
        bar.close()
        log.close()
    seconds = time.perf_counter() - start_time
    vectors = WordVectors(vocab.words, trainer.vectors)
    vectors.save(out / "vectors.txt", binary=False)
    vectors.save(out / "vectors.bin", binary=True)
    counts = "".join(f"{w} {c}\n" for w, c in zip(vocab.words, vocab.counts.tolist(), strict=True))
    atomic_write_text(out / "vocab.txt", counts)
    summary = {
        "engine": trainer.name,
        "words": per_epoch,
        "vocab": len(vocab.words),
        "epochs": settings.epochs,
        "steps": steps,
        "words_per_s": trained / max(seconds, 1e-9),
        "final_loss": _last_loss(out / "metrics.jsonl"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    from bertkit.pretrain.plots import plot_metrics

    plot_metrics(out / "metrics.jsonl", out / "curves.png")
    return summary


def _write_engine(folder: Path, trainer, save_file) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in trainer.state().items()}, str(folder / ENGINE_FILE))


def _last_loss(path: Path) -> float | None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[-1]["sgns_loss"] if rows else None
