"""gensim's optimised C loop as a word2vec engine, driven chunk by chunk like bertkit's own.

gensim (`pip install gensim`, or `pip install bertkit[lineage]`) runs the C tool's per-example updates in
Cython with BLAS, several threads racing (Hogwild); on 2 cores it trains several times more words per second than
the torch engine (docs/seeing-inside.md has the measurement), so `--engine auto` uses it when it is installed.
bertkit gives it the same vocabulary (`build_vocab_from_freq`: the same words and counts, so the same
subsampling and noise distribution) and the same learning-rate line, one `train` call per chunk with the chunk's
start and end rate, so that progress, the log, checkpoints and `--resume` work as with the torch engine.

Same seed, same bits holds with one worker thread (`--threads 1`): gensim seeds its vectors from the seed and
each job's random stream from `model.random`, which a checkpoint saves. With more threads the threads' order
changes the result slightly, run to run (gensim says the same).
"""

from __future__ import annotations

import logging

import numpy as np

from bertkit.errors import BertkitError
from bertkit.lineage.word2vec import Chunk, Corpus, Vocab, Word2VecSettings, learning_rate


def available() -> bool:
    try:
        import gensim  # noqa: F401
    except ImportError:
        return False
    return True


class GensimEngine:
    name = "gensim"

    def __init__(self, settings: Word2VecSettings, vocab: Vocab, threads: int):
        try:
            from gensim.models import Word2Vec
        except ImportError:
            raise BertkitError("--engine gensim needs gensim: `pip install gensim` (or use --engine torch)") from None
        logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines would bury the progress bar
        s = self.settings = settings
        self.model = Word2Vec(
            vector_size=s.dim,
            window=s.window,
            min_count=s.min_count,
            sample=s.sample,
            negative=s.negative,
            ns_exponent=s.ns_exponent,
            sg=int(s.mode == "skipgram"),
            cbow_mean=1,
            hs=0,
            alpha=s.start_alpha,
            min_alpha=s.min_alpha,
            workers=threads,
            seed=s.seed,
            epochs=1,
            compute_loss=True,
        )
        self.model.build_vocab_from_freq(dict(zip(vocab.words, vocab.counts.tolist(), strict=True)))
        order = [self.model.wv.key_to_index[w] for w in vocab.words]  # gensim's rows in bertkit's word order
        self.order = np.array(order, np.int64)

    @property
    def vectors(self) -> np.ndarray:
        return self.model.wv.vectors[self.order]

    def state(self) -> dict[str, np.ndarray]:
        random = self.model.random.get_state()  # ('MT19937', keys, pos, has_gauss, cached_gaussian)
        return {
            "w_in": self.model.wv.vectors.copy(),
            "w_out": self.model.syn1neg.copy(),
            "random_keys": np.asarray(random[1]),
            "random_rest": np.array([random[2], random[3], random[4]], np.float64),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.model.wv.vectors[:] = state["w_in"]
        self.model.syn1neg[:] = state["w_out"]
        pos, has_gauss, cached = state["random_rest"].tolist()
        self.model.random.set_state(
            ("MT19937", state["random_keys"].astype(np.uint32), int(pos), int(has_gauss), cached)
        )

    def train_chunk(self, corpus: Corpus, chunk: Chunk, epoch: int, index: int, done: float, total: float) -> float:
        words = chunk.stop - chunk.start
        self.model.train(
            corpus.sentences[chunk.first : chunk.last],
            total_examples=chunk.last - chunk.first,
            epochs=1,
            start_alpha=learning_rate(self.settings, done, total),
            end_alpha=learning_rate(self.settings, done + words, total),
            compute_loss=True,
        )
        return float(self.model.get_latest_training_loss())
