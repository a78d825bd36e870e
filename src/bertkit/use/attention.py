"""Attention maps: where each token looks, in every layer and head, as heat maps, JSON and one HTML page.

`attention_maps` runs a model folder of any family bertkit loads on one text (or pair) and keeps the attention
probabilities, (layers, heads, T, T): row i is where token i looks (the softmax over keys, summing to 1), column j
what looks at token j. Padding (`pad_to`) is a key no query may attend, so its columns are exactly 0; padded
queries still get rows, as in `transformers`. Layers and heads are numbered from 1 on the command line and in the
pictures (layer 1 is the first Transformer layer; the embeddings have no attention).

Pictures: `draw_head` (one head, tokens on both axes: queries down the side, keys along the bottom) and
`draw_layer` (all heads of a layer in a grid). Both draw Chinese with the font `bertkit.fonts` finds and return
matplotlib's missing-glyph warnings, so that the caller can say when characters came out as boxes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertkit.errors import BertkitError
from bertkit.fonts import cjk_rc

KINDS = ("text", "special", "pad")  # what a position holds: a text token, [CLS]/[SEP] (<s>, </s>), padding


@dataclass
class AttentionMaps:
    tokens: list[str]
    kinds: list[str]  # one of KINDS per position
    segments: list[int]  # 0: the text, 1: the pair (--pair)
    probs: np.ndarray  # (layers, heads, T, T) float32: probs[l, h, i] is where token i looks in layer l+1, head h+1
    model: str
    text: str
    pair: str | None = None

    @property
    def num_layers(self) -> int:
        return self.probs.shape[0]

    @property
    def num_heads(self) -> int:
        return self.probs.shape[1]

    def head(self, layer: int, head: int) -> np.ndarray:
        """(T, T) probabilities of layer `layer`, head `head`, both numbered from 1."""
        return self.probs[layer - 1, head - 1]

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "text": self.text,
            "pair": self.pair,
            "tokens": self.tokens,
            "kinds": self.kinds,
            "segments": self.segments,
            "layers": self.num_layers,
            "heads": self.num_heads,
            # attentions[l][h][i][j]: layer l+1, head h+1, query i, key j
            "attentions": np.round(self.probs.astype(np.float64), 6).tolist(),
        }


def check_text(text: str, what: str = "the text") -> None:
    if not text.strip():
        raise BertkitError(f"{what} is empty; give a text to look at (e.g. 今天天气很好)")


def attention_maps(folder: str | os.PathLike, text: str, pair: str | None = None, pad_to: int | None = None):
    """The attention probabilities of every layer and head for `text` (and `pair`), padded to `pad_to` tokens."""
    from bertkit.hf import load_pretrained

    check_text(text)
    if pair is not None:
        check_text(pair, "--pair")
    ckpt = load_pretrained(folder)
    if ckpt.tokenizer is None:
        raise BertkitError(f"{folder}: no tokenizer.json or vocab.txt; attention maps need the model's tokenizer")
    enc = ckpt.tokenizer.encode(text, pair)  # not truncated: a text too long is refused, not cut
    n, limit = len(enc.ids), ckpt.config.max_length
    if n > limit:
        raise BertkitError(
            f"the text is {n} tokens with [CLS]/[SEP] but {folder} has {limit} positions: shorten it to fit"
        )
    length = n if pad_to is None else pad_to
    if not n <= length <= limit:
        raise BertkitError(f"--pad-to {pad_to}: must be from the text's {n} tokens to the model's {limit} positions")
    pad = ckpt.tokenizer.pad_token_id
    ids = torch.tensor([enc.ids + [pad] * (length - n)])
    types = torch.tensor([enc.token_type_ids + [0] * (length - n)])
    mask = torch.tensor([[1] * n + [0] * (length - n)])
    probs = attention_probs(ckpt.encoder, ids, mask, types)[0]
    special = enc.special_tokens_mask
    kinds = ["special" if s else "text" for s in special] + ["pad"] * (length - n)
    pad_token = ckpt.tokenizer.id_to_token(pad) or "[PAD]"
    return AttentionMaps(
        tokens=list(enc.tokens) + [pad_token] * (length - n),
        kinds=kinds,
        segments=list(enc.token_type_ids) + [0] * (length - n),
        probs=probs,
        model=str(folder),
        text=text,
        pair=pair,
    )


def attention_probs(encoder, input_ids, attention_mask, token_type_ids=None) -> np.ndarray:
    """(B, layers, heads, T, T) float32 attention probabilities of an encoder of any family, dropout off."""
    encoder.eval()
    with torch.inference_mode():
        out = encoder(input_ids, attention_mask, token_type_ids, output_attentions=True)
    return torch.stack(out.attentions, dim=1).float().numpy()


def check_choice(value: int | None, count: int, flag: str, what: str) -> None:
    if value is not None and not 1 <= value <= count:
        raise BertkitError(f"{flag} {value}: the model has {count} {what}, numbered 1..{count}")


# ------------------------------------------------------------------------------------------------ pictures
LABEL_COLOURS = {"text": "black", "special": "#c0392b", "pad": "#999999"}


def _label_ticks(ax, maps: AttentionMaps, fontsize: float) -> None:
    T = len(maps.tokens)
    ax.set_xticks(range(T), maps.tokens, fontsize=fontsize)
    ax.set_yticks(range(T), maps.tokens, fontsize=fontsize)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for label, kind in zip(labels, maps.kinds, strict=True):
            label.set_color(LABEL_COLOURS[kind])
    for label, token in zip(ax.get_xticklabels(), maps.tokens, strict=True):
        label.set_rotation(0 if len(token) <= 2 else 90)  # a Chinese character stands upright, [CLS] on its side


@contextlib.contextmanager
def glyph_check(rc: dict | None):
    """Draw under the CJK font (or `rc`), collecting matplotlib's missing-glyph warnings (characters drawn as
    boxes) into the list it yields instead of printing them; other warnings pass on."""
    import matplotlib

    missing: list[str] = []
    with matplotlib.rc_context(cjk_rc() if rc is None else rc), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield missing
    for w in caught:
        if "missing from font" in str(w.message):
            missing.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_head(maps: AttentionMaps, layer: int, head: int, path: Path, rc: dict | None = None) -> list[str]:
    """One head's heat map: query tokens down the side, key tokens along the bottom; returns missing glyphs."""
    with glyph_check(rc) as missing:
        _save(head_figure(maps, layer, head), path)
    return missing


def head_figure(maps: AttentionMaps, layer: int, head: int):
    """The matplotlib figure of `draw_head` (made under the caller's font settings)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(maps.tokens)
    side = min(max(4.0, 0.32 * T + 1.5), 40.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(maps.head(layer, head), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    _label_ticks(ax, maps, fontsize=10 if T <= 40 else 6)
    ax.set(xlabel="looked at (key)", ylabel="looking (query)", title=f"layer {layer}, head {head}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def draw_layer(maps: AttentionMaps, layer: int, path: Path, rc: dict | None = None) -> list[str]:
    """All heads of one layer in a grid, tokens on the axes while they fit; returns missing glyphs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, T = maps.num_heads, len(maps.tokens)
    cols = math.ceil(math.sqrt(H))
    rows = math.ceil(H / cols)
    cell = min(max(2.5, 0.18 * T + 1.0), 12.0)
    with glyph_check(rc) as missing:
        fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell), squeeze=False)
        for h, ax in enumerate(axes.flat):
            if h >= H:
                ax.axis("off")
                continue
            ax.imshow(maps.head(layer, h + 1), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
            if T <= 48:
                _label_ticks(ax, maps, fontsize=6)
            else:
                ax.set(xticks=[], yticks=[])
            ax.set_title(f"head {h + 1}", fontsize=9)
        fig.suptitle(f"layer {layer}: every head (rows: looking, columns: looked at)")
        fig.tight_layout()
        _save(fig, path)
    return missing


# ------------------------------------------------------------------------------------------------ outputs
def write_all(
    maps: AttentionMaps, out: Path, layers: list[int], heads: list[int], page_at: tuple[int, int]
) -> tuple[list[Path], list[str]]:
    """Every file into `out`: a grid per layer in `layers`, a heat map per (layer, head) for `heads`, the JSON and
    the HTML page (opening at `page_at`). Drawn in a scratch folder beside `out` and moved in at the end, so that a
    failure leaves what `out` held as it was. Returns the files and the missing-glyph warnings."""
    from bertkit.use.attention_page import write_page

    out.mkdir(parents=True, exist_ok=True)
    scratch = out / f".attention-{os.getpid()}.tmp"
    scratch.mkdir()
    missing: list[str] = []
    try:
        names = []
        for layer in layers:
            names.append(f"layer-{layer:02d}.png")
            missing += draw_layer(maps, layer, scratch / names[-1])
            for head in heads:
                names.append(f"layer-{layer:02d}-head-{head:02d}.png")
                missing += draw_head(maps, layer, head, scratch / names[-1])
        (scratch / "attention.json").write_text(json.dumps(maps.to_json(), ensure_ascii=False), encoding="utf-8")
        write_page(maps, scratch / "attention.html", *page_at)
        names += ["attention.json", "attention.html"]
        for name in names:
            os.replace(scratch / name, out / name)
    finally:
        for left in scratch.iterdir():
            left.unlink()
        scratch.rmdir()
    return [out / n for n in names], missing
