"""Sub-word alignment, sliding windows, and QA contexts in windows.

Sub-word alignment, the policy for tagging: words are joined with single spaces and tokenized; each word's
tag is learned and predicted on its *first* word piece, and the other pieces get the label -100 (ignored by
the loss). A word whose characters the tokenizer drops entirely (control characters) has no piece; it is
predicted "O" (BIO) or "S" (BMES) and still counted by the metrics. For raw text (`text_pieces`) the words
are the tokenizer's own pre-tokens (a CJK character, or a run of letters split at punctuation), and each
word keeps its character span in the original text, so predicted entities map back to characters.

Long inputs are never cut: a tagging input longer than the model's window is split into overlapping windows
(`windows`) whose starts are `stride` pieces apart, and each piece takes the prediction of the window in which
it is most central, i.e. has the most context on its shorter side (`owners`, `recombine`). Training uses the
same rule: a piece is labelled only in the window that owns it, so each word counts once in the loss.
Classification inputs are truncated (longest text of a pair first), and the number truncated is reported.

Extractive QA reads SQuAD v1.1 / v2.0 and CMRC 2018 files (one format): a question and its context become
[CLS] question [SEP] context window [SEP], the context read in windows `stride` pieces apart when it does not
fit, each piece keeping its character span so that answers map back to the context's characters exactly.
A window that does not hold the whole answer is trained to point at [CLS] ("no answer here"). Answers are
found as in Google's run_squad.py (`qa_answer`): the n best start and end positions of each window, spans
that run forward and are at most `max_answer_length` pieces long, each scored start + end logit, the best
over all windows winning. A span is read only in the window that holds it with the most context on its
shorter side: the tagger's rule, applied to the whole span (Google's looks at the start alone, and so loses
a span that runs past the end of the window its start belongs to). For SQuAD 2.0 the answer is empty when
the [CLS] ("null") score, the lowest over the windows, beats the best span's by more than a threshold
(`metrics.best_null_threshold` finds the best one on a dev set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


# -------------------------------------------------------------------------------- sub-word alignment
@dataclass
class Pieces:
    """A text's word pieces (no special tokens) and the words they belong to."""

    ids: list[int]  # (n,) piece ids
    word_of: list[int]  # (n,) the word each piece belongs to
    spans: list[tuple[int, int]]  # per word: its character span in the text
    text: str

    @property
    def first_piece(self) -> list[int | None]:
        """Per word, the index of its first piece (where its tag is learned and read), None if it has none."""
        first: list[int | None] = [None] * len(self.spans)
        for p in range(len(self.ids) - 1, -1, -1):
            first[self.word_of[p]] = p
        return first


def word_pieces(tokenizer, examples: Sequence[Sequence[str]]) -> list[Pieces]:
    """Pieces of pre-split words (tagging data): each list of words is joined with single spaces."""
    texts, all_spans = [], []
    for words in examples:
        spans, pos = [], 0
        for w in words:
            spans.append((pos, pos + len(w)))
            pos += len(w) + 1
        texts.append(" ".join(words))
        all_spans.append(spans)
    out = []
    for text, spans, enc in zip(texts, all_spans, _encode(tokenizer, texts), strict=True):
        char_to_word = [-1] * len(text)
        for w, (a, b) in enumerate(spans):
            char_to_word[a:b] = [w] * (b - a)
        # A piece belongs to the word its first character is in. Words never share a piece: BERT's
        # pre-tokenizer always splits at the spaces between them.
        word_of = [char_to_word[a] for a, _ in enc.offsets]
        out.append(Pieces(enc.ids, word_of, spans, text))
    return out


def text_pieces(tokenizer, texts: Sequence[str]) -> list[Pieces]:
    """Pieces of raw text (prediction); the words are the tokenizer's pre-tokens, with their spans."""
    out = []
    for text, enc in zip(texts, _encode(tokenizer, list(texts)), strict=True):
        renumber: dict[int, int] = {}
        spans: list[list[int]] = []
        word_of = []
        for wid, (a, b) in zip(enc.word_ids, enc.offsets, strict=True):
            if wid not in renumber:
                renumber[wid] = len(spans)
                spans.append([a, b])
            w = renumber[wid]
            spans[w][1] = max(spans[w][1], b)
            word_of.append(w)
        out.append(Pieces(enc.ids, word_of, [tuple(s) for s in spans], text))
    return out


def char_span(pieces: Pieces, a: int, b: int) -> tuple[int, int]:
    """The characters of words a..b-1 (end exclusive) in `pieces.text`: from the first's start to the last's end."""
    return pieces.spans[a][0], pieces.spans[b - 1][1]


def _encode(tokenizer, texts: list[str]):
    return tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []


# ----------------------------------------------------------------------------------------- sliding windows
def windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `size` pieces covering 0..n, starts `stride` apart, the last one
    ending at n. One window when everything fits."""
    if not 1 <= stride <= size:
        raise ValueError(f"stride must be in 1..{size} (the window size), got {stride}")
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size, stride)) + [n - size]
    return [(s, s + size) for s in starts]


def owners(n: int, wins: Sequence[tuple[int, int]]) -> list[int]:
    """For each position, the window in which it is most central: the one that maximises the context on the
    position's shorter side, min(p - start, end - 1 - p); ties go to the earlier window."""
    best, context = [0] * n, [-1] * n
    for w, (s, e) in enumerate(wins):  # each position is in about size / stride windows: linear in n
        for p in range(s, e):
            if min(p - s, e - 1 - p) > context[p]:
                best[p], context[p] = w, min(p - s, e - 1 - p)
    return best


def recombine(window_logits: Sequence[torch.Tensor], wins: Sequence[tuple[int, int]], n: int) -> torch.Tensor:
    """(n, C) logits for a whole sequence from each window's (end - start, C) logits, each position taken
    from the window that owns it."""
    if n == 0:
        return window_logits[0].new_zeros((0, window_logits[0].shape[-1]))
    own = owners(n, wins)
    return torch.stack([window_logits[own[p]][p - wins[own[p]][0]] for p in range(n)])


# ---- extractive QA: contexts in windows, answers from start / end logits
@dataclass
class Context:
    """A QA context's word pieces, each piece's character span in `text`, and the windows that read them."""

    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]  # (n,) character span of each piece
    wins: list[tuple[int, int]]  # [start, end) windows over the pieces

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The characters of pieces first..last (inclusive): from the first's start to the last's end."""
        return self.offsets[first][0], self.offsets[last][1]


def answer_pieces(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last piece (inclusive) that hold characters of [start, end); None when no piece does
    (the answer is made of characters the tokenizer drops). An answer that begins or ends inside a piece
    takes the whole piece: "Paris" in "Parisian" is read as the piece it starts."""
    inside = [p for p, (a, b) in enumerate(offsets) if a < end and b > start]
    return (inside[0], inside[-1]) if inside else None


@dataclass
class QAOptions:
    """How answers are read from the logits (Google's run_squad.py defaults)."""

    max_answer_length: int = 30  # pieces
    n_best: int = 20  # start and end positions tried per window, and spans kept
    null_threshold: float | None = None  # None: always answer (SQuAD 1.1, CMRC 2018); else see `qa_answer`


def span_window(wins: Sequence[tuple[int, int]], first: int, last: int) -> int:
    """The window that reads pieces first..last (inclusive) with the most context on the span's shorter side,
    min(first - start, end - 1 - last); ties go to the earlier window, -1 if no window holds the span. For a
    single piece this is `owners`' rule."""
    best, context = -1, -1
    for w, (s, e) in enumerate(wins):
        if s <= first and last < e and min(first - s, e - 1 - last) > context:
            best, context = w, min(first - s, e - 1 - last)
    return best


def qa_answer(ctx: Context, window_logits: Sequence[torch.Tensor], nulls: Sequence[float], opts: QAOptions) -> dict:
    """The answer to one question from each window's (end - start, 2) start / end logits over its context
    pieces, and each window's null score (start + end logit at [CLS]).

    Returns `text`, its character `start` and `end` in the context (None for no answer), `probability`
    (a softmax over the n best spans, and the null answer when it is allowed), `score` (the best span's
    start + end logit), `null_score` (the lowest over the windows, as Google's) and `n_best`: the spans
    tried, best first. No answer is given when `opts.null_threshold` is set and null_score - score exceeds
    it, or when no span fits.
    """
    spans: dict[tuple[int, int], float] = {}  # character span -> start + end logit
    for w, ((s, e), logits) in enumerate(zip(ctx.wins, window_logits, strict=True)):
        k = min(opts.n_best, e - s)
        if k == 0:
            continue
        starts, ends = logits[:, 0].tolist(), logits[:, 1].tolist()
        top_ends = logits[:, 1].topk(k).indices.tolist()
        for i in logits[:, 0].topk(k).indices.tolist():
            for j in top_ends:
                if j < i or j - i + 1 > opts.max_answer_length:
                    continue
                if span_window(ctx.wins, s + i, s + j) != w:  # each span is read in one window only
                    continue
                span = ctx.span(s + i, s + j)  # pieces sharing characters may give one span twice: keep the best
                spans[span] = max(starts[i] + ends[j], spans.get(span, -math.inf))
    best = sorted(spans.items(), key=lambda kv: -kv[1])[: opts.n_best]
    null = min(nulls)
    scores = torch.tensor([score for _, score in best] + ([null] if opts.null_threshold is not None else []))
    probs = scores.softmax(0).tolist() if len(scores) else []
    n_best = [{"text": ctx.text[a:b], "start": a, "end": b, "score": round(sc, 4)} for (a, b), sc in best]
    answer = {"score": best[0][1] if best else -math.inf, "null_score": null, "n_best": n_best}
    abstain = opts.null_threshold is not None and bool(best) and null - best[0][1] > opts.null_threshold
    if not best or abstain:
        return answer | {"text": "", "start": None, "end": None, "probability": probs[-1] if probs else None}
    (a, b), _ = best[0]
    return answer | {"text": ctx.text[a:b], "start": a, "end": b, "probability": probs[0]}
