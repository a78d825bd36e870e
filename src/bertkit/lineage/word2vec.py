"""word2vec (Mikolov et al. 2013; seeds 000 and 003): one vector per word, learned by predicting neighbours.

The algorithm is the C tool's, as gensim also runs it:
- the vocabulary keeps words seen `min_count` times, most frequent first (ties: first seen first);
- frequent words are subsampled afresh each epoch: a word of count c among N is kept with probability
  min(1, (sqrt(c / (t·N)) + 1) · t·N / c), t = `sample`; windows are then taken over the kept words, within a
  sentence;
- each centre word gets a window reduced at random to b in 1..`window` (nearer words count more, on average);
- negative sampling: `negative` noise words per positive, drawn from the unigram distribution raised to 0.75; a
  noise word equal to the positive is skipped; loss -log σ(u_o·v) - Σ log σ(-u_k·v);
- skip-gram: each (context word, centre word) pair is one example, the context word's input vector v predicting
  the centre word's output vector u (the C tool's orientation); CBOW: v is the mean of the window's input
  vectors predicting the centre, and each context word gets the whole error, as the C tool and gensim do;
- input vectors start uniform in ±0.5/D, output vectors at 0; the learning rate falls linearly from `alpha`
  (0.025 skip-gram, 0.05 CBOW: the C tool's defaults) to `min_alpha` over all the epochs' words.

One thing differs, and it is what makes Python fast: the C tool updates after every example (several threads
racing, "Hogwild"); here `batch` examples are computed from the same weights and their updates summed into the
tables at once (`index_add_`), as mini-batch SGD. With 2,048 examples per update the vectors are as good as
gensim's on the same corpus (tests/test_word2vec.py checks neighbours a Chinese reader would accept), and the
result is deterministic: the same seed gives the same bits, on any number of threads.

Randomness (subsampling, windows, noise) is drawn per (seed, epoch, chunk) from its own generator, so a run
resumed at a chunk boundary draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bertkit.errors import BertkitError

MODES = ("skipgram", "cbow")
DEFAULT_ALPHA = {"skipgram": 0.025, "cbow": 0.05}
NOISE_TABLE = 10_000_000  # slots of the noise table (the C tool's has 1e8; 1e7 resolves a share of 1e-7)


@dataclass(frozen=True)
class Word2VecSettings:
    mode: str = "skipgram"
    dim: int = 100
    window: int = 5
    negative: int = 5
    min_count: int = 5
    sample: float = 1e-3
    ns_exponent: float = 0.75
    alpha: float | None = None  # None: DEFAULT_ALPHA[mode]
    min_alpha: float = 1e-4
    epochs: int = 5
    batch: int = 2048  # examples per update: pairs (skip-gram) or centre words (CBOW)
    chunk_words: int = 100_000  # words per chunk: the unit of logging, checkpoints and random streams
    seed: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BertkitError(f"mode {self.mode!r}: use one of {', '.join(MODES)}")

    @property
    def start_alpha(self) -> float:
        return DEFAULT_ALPHA[self.mode] if self.alpha is None else self.alpha

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Vocab:
    words: list[str]
    counts: np.ndarray  # (V,) int64, most frequent first

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int) -> Vocab:
        counter = Counter(w for s in sentences for w in s)  # insertion order: first seen first
        kept = sorted(
            ((c, i, w) for i, (w, c) in enumerate(counter.items()) if c >= min_count), key=lambda x: (-x[0], x[1])
        )
        if not kept:
            raise BertkitError(f"no word occurs {min_count} times (--min-count); the corpus is too small for it")
        return cls([w for _, _, w in kept], np.array([c for c, _, _ in kept], np.int64))

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def keep_probability(self, sample: float) -> np.ndarray:
        """(V,) the chance each occurrence survives subsampling (1 for every word when `sample` is 0)."""
        if sample <= 0:
            return np.ones(len(self.words))
        threshold = sample * float(self.counts.sum())
        return np.minimum(1.0, (np.sqrt(self.counts / threshold) + 1.0) * threshold / self.counts)

    def noise_cdf(self, exponent: float) -> np.ndarray:
        """(V,) cumulative noise distribution: count ** exponent, normalised."""
        weights = self.counts.astype(np.float64) ** exponent
        cdf = np.cumsum(weights)
        return cdf / cdf[-1]


def encode(sentences: Iterable[list[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(ids, sentence number) of every in-vocabulary word, in corpus order; words below min_count are dropped
    before windows are taken, as in the C tool."""
    index = vocab.index
    ids, sents = [], []
    for n, s in enumerate(sentences):
        kept = [index[w] for w in s if w in index]
        ids += kept
        sents += [n] * len(kept)
    return np.array(ids, np.int64), np.array(sents, np.int64)


@dataclass(frozen=True)
class Chunk:
    """Sentences [first, last) and their in-vocabulary words [start, stop) of `ids`: the unit of training, logging,
    checkpoints and random streams. Chunks are cut between sentences, so windows never cross one."""

    first: int
    last: int
    start: int
    stop: int


def chunks(sents: np.ndarray, sentences: int, chunk_words: int) -> list[Chunk]:
    """About `chunk_words` in-vocabulary words per chunk, cut only between sentences."""
    word_start = np.searchsorted(sents, np.arange(sentences + 1))  # first word of each sentence (and the end)
    found, first = [], 0
    while first < sentences:
        last = int(np.searchsorted(word_start, word_start[first] + chunk_words, side="left"))
        last = min(max(last, first + 1), sentences)
        found.append(Chunk(first, last, int(word_start[first]), int(word_start[last])))
        first = last
    return found


@dataclass
class Corpus:
    """The training corpus: its sentences of words, and the in-vocabulary words as ids with their sentence number."""

    sentences: list[list[str]]
    ids: np.ndarray
    sents: np.ndarray

    @classmethod
    def encode(cls, sentences: list[list[str]], vocab: Vocab) -> Corpus:
        return cls(sentences, *encode(sentences, vocab))


def learning_rate(settings: Word2VecSettings, done: float, total: float) -> float:
    """Linear from `alpha` to `min_alpha` over the `total` words of all epochs, `done` of them trained."""
    a, b = settings.start_alpha, settings.min_alpha
    return max(b, a - (a - b) * done / max(total, 1.0))


class TorchEngine:
    """bertkit's own: the two tables as tensors, `batch` examples per summed update (see the module docstring)."""

    name = "torch"

    def __init__(self, settings: Word2VecSettings, vocab: Vocab):
        self.settings, self.vocab = settings, vocab
        V, D = len(vocab.words), settings.dim
        g = np.random.default_rng([settings.seed, 2**31])
        self.w_in = torch.from_numpy(((g.random((V, D), dtype=np.float32) - 0.5) / D).astype(np.float32))
        self.w_out = torch.zeros(V, D)
        self.keep = vocab.keep_probability(settings.sample)
        # the C tool's noise table: word i fills a share of NOISE_TABLE slots proportional to count_i ** 0.75, and a
        # noise word is a uniform slot (one integer draw and a lookup, instead of a search per draw)
        cdf = vocab.noise_cdf(settings.ns_exponent)
        self.noise_table = np.searchsorted(cdf, (np.arange(NOISE_TABLE) + 0.5) / NOISE_TABLE).astype(np.int64)

    @property
    def vectors(self) -> np.ndarray:
        return self.w_in.numpy()

    def state(self) -> dict[str, np.ndarray]:
        return {"w_in": self.w_in.numpy().copy(), "w_out": self.w_out.numpy().copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.w_in = torch.from_numpy(np.array(state["w_in"], np.float32))
        self.w_out = torch.from_numpy(np.array(state["w_out"], np.float32))

    @torch.no_grad()
    def train_chunk(self, corpus: Corpus, chunk: Chunk, epoch: int, index: int, done: float, total: float) -> float:
        """Train on one chunk of one epoch (`done` of `total` words trained before it); returns the summed loss."""
        s = self.settings
        ids, sents = corpus.ids[chunk.start : chunk.stop], corpus.sents[chunk.start : chunk.stop]
        rng = np.random.default_rng([s.seed, epoch, index])
        kept = rng.random(len(ids)) < self.keep[ids]
        ids, sents = ids[kept], sents[kept]
        reduced = rng.integers(1, s.window + 1, size=len(ids))  # each centre's window, 1..window
        if s.mode == "skipgram":
            inputs, targets = skipgram_pairs(sents, reduced, s.window)
            inputs, targets = ids[inputs], ids[targets]
        else:
            inputs, targets = cbow_windows(sents, reduced, s.window)  # (N, 2·window) positions, -1 = none
            inputs, targets = np.where(inputs >= 0, ids[np.maximum(inputs, 0)], -1), ids[targets]
        n, words, loss = len(targets), chunk.stop - chunk.start, 0.0
        for start in range(0, n, s.batch):
            stop = min(n, start + s.batch)
            alpha = learning_rate(s, done + words * start / max(n, 1), total)
            noise = self.noise_table[rng.integers(0, NOISE_TABLE, (stop - start, s.negative))]
            loss += self._update(inputs[start:stop], targets[start:stop], noise, alpha)
        return loss

    def _update(self, inputs: np.ndarray, targets: np.ndarray, noise: np.ndarray, alpha: float) -> float:
        outs = torch.from_numpy(np.concatenate([targets[:, None], noise], 1))  # (B, 1+K): the positive, then noise
        B, K1 = outs.shape
        valid = torch.ones(B, K1)
        valid[:, 1:] = (outs[:, 1:] != outs[:, :1]).float()  # noise equal to the positive is skipped
        label = torch.zeros(B, K1)
        label[:, 0] = 1.0
        flat = outs.flatten()
        u = self.w_out.index_select(0, flat).view(B, K1, -1)  # (B, 1+K, D)
        if inputs.ndim == 1:  # skip-gram: one input word per example
            rows = torch.from_numpy(inputs)
            v = self.w_in.index_select(0, rows)  # (B, D)
        else:  # CBOW: the mean of the window's input vectors
            ctx = torch.from_numpy(inputs)
            present = ctx >= 0  # (B, 2W)
            rows = ctx[present]
            gathered = torch.zeros(*ctx.shape, u.shape[-1])
            gathered[present] = self.w_in.index_select(0, rows)
            v = gathered.sum(1) / present.sum(1, keepdim=True)
        scores = (u * v[:, None, :]).sum(-1)  # (B, 1+K)
        g = (label - torch.sigmoid(scores)) * valid * alpha
        signed = torch.where(label > 0, scores, -scores)
        loss = float(-(torch.nn.functional.logsigmoid(signed) * valid).sum())
        grad_in = (g[..., None] * u).sum(1)  # (B, D)
        self.w_out.index_add_(0, flat, (g[..., None] * v[:, None, :]).view(B * K1, -1))
        if inputs.ndim == 1:
            self.w_in.index_add_(0, rows, grad_in)
        else:  # each context word gets the whole error
            self.w_in.index_add_(0, rows, grad_in[:, None, :].expand(-1, ctx.shape[1], -1)[present])
        return loss


def skipgram_pairs(sents: np.ndarray, reduced: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(context positions, centre positions) of every pair: centre i and context j = i ± o for o ≤ reduced[i], in
    the same sentence. Pairs come offset by offset (the C tool goes centre by centre; within a chunk the order
    does not change what is learned beyond the batching)."""
    n = len(sents)
    contexts, centres = [], []
    for o in range(1, min(window, n - 1) + 1):
        same = sents[:-o] == sents[o:]  # positions i and i+o share a sentence
        right = np.flatnonzero(same & (reduced[:-o] >= o))  # centre i, context i+o
        left = np.flatnonzero(same & (reduced[o:] >= o))  # centre i+o, context i
        contexts += [right + o, left]
        centres += [right, left + o]
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(contexts), np.concatenate(centres)


def cbow_windows(sents: np.ndarray, reduced: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2·window) context positions (-1: none) and (N,) centre positions, for centres with any context."""
    n = len(sents)
    pos = np.arange(n)
    offsets = np.r_[np.arange(-window, 0), np.arange(1, window + 1)]  # (2W,)
    ctx = pos[:, None] + offsets[None, :]
    inside = (ctx >= 0) & (ctx < n) & (np.abs(offsets)[None, :] <= reduced[:, None])
    inside &= sents[np.clip(ctx, 0, max(n - 1, 0))] == sents[:, None]
    ctx = np.where(inside, ctx, -1)
    has = inside.any(1)
    return ctx[has], pos[has]
