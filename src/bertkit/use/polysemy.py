"""The notes' polysemy lesson (seed 000: 苹果 the fruit and 苹果 the brand): one word in several contexts, the
cosine between its vectors in every pair of contexts, layer by layer, for each model given.

A static vector (word2vec, or any model's layer 0 before context enters) gives the same vector in every context:
cosine 1.0 by construction. A contextual model's vectors move with the context; when the contexts are labelled
with senses, the table shows the mean cosine within a sense and across senses, and the lesson is in the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np


@dataclass
class LayerRow:
    model: str  # "BERT", "ELMo", "word2vec"
    layer: str  # "0 (embeddings)", "1", ...
    cosines: np.ndarray  # (N, N)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(N, N) cosines between the rows of `vectors` (N, D)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def rows_of(model: str, per_context: list[np.ndarray], names: list[str]) -> list[LayerRow]:
    """A row per layer from each context's (layers, D) vectors; `names` labels the layers."""
    stacked = np.stack(per_context, 1)  # (layers, N, D)
    return [LayerRow(model, name, cosine_matrix(stacked[j])) for j, name in enumerate(names)]


def sense_means(cosines: np.ndarray, senses: list[str]) -> tuple[float, float]:
    """(mean cosine over pairs of contexts with the same sense, mean over pairs with different senses)."""
    same, other = [], []
    for i, j in combinations(range(len(senses)), 2):
        (same if senses[i] == senses[j] else other).append(cosines[i, j])
    return float(np.mean(same)) if same else float("nan"), float(np.mean(other)) if other else float("nan")


def table(rows: list[LayerRow], texts: list[str], senses: list[str] | None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): with senses, the mean within / across and the gap; without, every pair's cosine."""
    if senses:
        header = ["model", "layer", "same sense", "different senses", "gap"]
        body = []
        for r in rows:
            same, other = sense_means(r.cosines, senses)
            body.append([r.model, r.layer, f"{same:.3f}", f"{other:.3f}", f"{same - other:+.3f}"])
        return header, body
    pairs = list(combinations(range(len(texts)), 2))
    header = ["model", "layer", *(f"{i + 1}–{j + 1}" for i, j in pairs)]
    return header, [[r.model, r.layer, *(f"{r.cosines[i, j]:.3f}" for i, j in pairs)] for r in rows]


def draw(rows: list[LayerRow], texts: list[str], word: str, path: Path) -> list[str]:
    """A heat map of the cosine matrix per (model, layer), contexts numbered as in the table; returns matplotlib's
    missing-glyph warnings (see `bertkit.use.attention.glyph_check`)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bertkit.use.attention import glyph_check

    cols = min(len(rows), 4)
    n_rows = math.ceil(len(rows) / cols)
    N = len(texts)
    with glyph_check(None) as missing:
        fig, axes = plt.subplots(n_rows, cols, figsize=(cols * 3.2, n_rows * 3.0 + 1.2), squeeze=False)
        for ax, r in zip(axes.flat, rows, strict=False):
            ax.imshow(r.cosines, cmap="YlGnBu", vmin=0, vmax=1)
            for i in range(N):
                for j in range(N):
                    c = r.cosines[i, j]
                    colour = "white" if c > 0.6 else "black"
                    ax.text(j, i, f"{c:.2f}", ha="center", va="center", fontsize=7, color=colour)
            ax.set_xticks(range(N), [str(i + 1) for i in range(N)])
            ax.set_yticks(range(N), [str(i + 1) for i in range(N)])
            ax.set_title(
                f"{r.model} {r.layer}" if str(r.layer).startswith("(") else f"{r.model}, layer {r.layer}", fontsize=9
            )
        for ax in list(axes.flat)[len(rows) :]:
            ax.axis("off")
        legend = "   ".join(f"{i + 1}: {t}" for i, t in enumerate(texts))
        fig.suptitle(f"cosine between the vectors of {word} in each pair of contexts\n{legend}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110, format="png")
        plt.close(fig)
    return missing
