"""Benchmark: word2vec words/s, bertkit's two engines against `gensim.models.Word2Vec` itself.

The same corpus (the built-in People's Daily as jieba words, segmented once before any timing), the same settings
(100 dimensions, window 5, 5 noise words, min count 5, subsampling 1e-3, 5 epochs) and the same threads, for
skip-gram and CBOW. Words/s is the corpus's in-vocabulary words × epochs over the wall time of training
(vocabulary building included for every path). Each path is also scored the same way: of the test's hand-checked
neighbour lists (tests/test_word2vec.py), how many have an accepted word among the query's ten nearest.

    .venv/bin/python benchmarks/bench_word2vec.py
    .venv/bin/python benchmarks/bench_word2vec.py --write-docs     # and rewrite its table in docs/performance.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import doc_tables  # noqa: E402

TABLE = "word2vec-speed"  # its block in docs/performance.md


def neighbours_found(vectors) -> int:
    from test_word2vec import NEIGHBOURS

    return sum(bool({w for w, _ in vectors.most_similar([q], topn=10)} & ok) for q, ok in NEIGHBOURS)


def run_gensim(sentences, mode: str, threads: int, epochs: int):
    import numpy as np
    from gensim.models import Word2Vec

    from bertkit.lineage.vectors import WordVectors

    start = time.perf_counter()
    model = Word2Vec(
        sentences,
        vector_size=100,
        window=5,
        min_count=5,
        sample=1e-3,
        negative=5,
        sg=int(mode == "skipgram"),
        alpha=0.025 if mode == "skipgram" else 0.05,
        workers=threads,
        epochs=epochs,
        seed=1,
    )
    seconds = time.perf_counter() - start
    words = list(model.wv.index_to_key)
    return seconds, WordVectors(words, np.asarray(model.wv.vectors))


def run_bertkit(sentences, mode: str, threads: int, epochs: int, engine: str):
    import torch

    from bertkit.lineage.vectors import WordVectors
    from bertkit.lineage.w2v_run import make_engine
    from bertkit.lineage.word2vec import Corpus, Vocab, Word2VecSettings, chunks

    torch.set_num_threads(threads)
    settings = Word2VecSettings(mode=mode, epochs=epochs)
    start = time.perf_counter()
    vocab = Vocab.build(sentences, settings.min_count)
    data = Corpus.encode(sentences, vocab)
    plan = chunks(data.sents, len(sentences), settings.chunk_words)
    trainer = make_engine(engine, settings, vocab, threads)
    total = float(len(data.ids) * epochs)
    for epoch in range(epochs):
        for index, chunk in enumerate(plan):
            trainer.train_chunk(data, chunk, epoch, index, epoch * len(data.ids) + chunk.start, total)
    seconds = time.perf_counter() - start
    return seconds, WordVectors(vocab.words, trainer.vectors)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    doc_tables.add_arguments(p)
    args = p.parse_args()
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], command)
    from bertkit.lineage.w2v_run import read_units
    from bertkit.lineage.word2vec import Vocab, encode

    start = time.perf_counter()
    sentences = read_units(["peoples-daily"], "word")
    words = len(encode(sentences, Vocab.build(sentences, 5))[0])
    print(
        f"corpus: {len(sentences):,} sentences, {words:,} words in the vocabulary's reach "
        f"(jieba: {time.perf_counter() - start:.1f} s, not timed below)"
    )
    rows = []
    for mode in ("skipgram", "cbow"):
        results = {}
        for path in ("gensim", "bertkit-gensim", "bertkit-torch"):
            if path == "gensim":
                seconds, vectors = run_gensim(sentences, mode, args.threads, args.epochs)
            else:
                engine = path.split("-")[1]
                seconds, vectors = run_bertkit(sentences, mode, args.threads, args.epochs, engine)
            rate = words * args.epochs / seconds
            results[path] = rate
            found = neighbours_found(vectors)
            print(f"{mode:9s} {path:15s} {rate:>10,.0f} words/s ({seconds:.1f} s)   neighbour lists met: {found}/5")
            rows.append([mode, f"`{path}`", f"{rate:,.0f}", f"{rate / results['gensim']:.2f}×", f"{found} / 5"])
    if args.write_docs:
        header = ["mode", "path", "words/s", "vs gensim", "neighbour lists met"]
        note = (
            "`gensim`: `gensim.models.Word2Vec` called directly; `bertkit-gensim`: `bertkit word2vec train --engine "
            "gensim` (the same C loop, one `train` call per 100,000-word chunk for progress, log and checkpoints); "
            "`bertkit-torch`: bertkit's own engine (2,048 examples per summed update). Neighbour lists: the five of "
            "tests/test_word2vec.py, met when one accepted word is among the query's ten nearest."
        )
        doc_tables.exit_on_error(doc_tables.write_table, page, TABLE, header, rows, command, note)
        print(f"wrote table {TABLE} in {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
