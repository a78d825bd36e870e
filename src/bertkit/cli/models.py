"""Commands on models and vocabularies: `params`, `tokenize`, `tokenizer train`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, NON_NEGATIVE, Range, command
from bertkit.errors import BertkitError


# ------------------------------------------------------------------------------------------ commands
@command("params")
def params_cmd(
    model: Annotated[str, "a preset name (bert-base, bert-base-chinese, ...) or a model folder"],
    heads: Annotated[list[str], "heads to count with a preset: mlm, nsp, classifier, rtd (ELECTRA)"] = [],  # noqa: B006
    num_labels: Annotated[int | None, "labels for a preset's classifier head (default 2)"] = None,
) -> None:
    """Count parameters by component: embeddings, each layer's attention / FFN / LayerNorm, pooler, heads."""
    import torch

    from bertkit.config import MAX_LABELS, PRESETS, from_preset
    from bertkit.hf import build_heads, load_pretrained
    from bertkit.model import BertEncoder
    from bertkit.sizes import parameter_table

    if num_labels is not None and (num_labels < 1 or "classifier" not in heads):
        raise BertkitError(
            f"--num-labels {num_labels}: "
            + ("must be at least 1" if num_labels < 1 else "give it with --heads classifier")
        )
    if num_labels is not None and num_labels > MAX_LABELS:  # the label names alone would fill the memory
        raise BertkitError(
            f"--num-labels {num_labels:,} is more than {MAX_LABELS:,}: a classifier head names every label in "
            "config.json, and no labelled data set has that many classes"
        )
    if model in PRESETS:
        labels = {i: f"LABEL_{i}" for i in range(num_labels or 2)} if "classifier" in heads else {}
        config = from_preset(model, id2label=labels)
        with torch.device("meta"):  # count without allocating: bert-large is 1.3 GB in fp32
            modules = {"encoder": BertEncoder(config), **build_heads(config, heads)}
        title = f"{model} (preset)"
    elif Path(model).exists():
        if heads:
            raise BertkitError("--heads applies to a preset; a folder's heads are the ones its weights hold")
        ckpt = load_pretrained(model, tokenizer=False)
        modules, config, title = ckpt.modules(), ckpt.config, str(model)
    else:
        raise BertkitError(f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a folder")
    rows = parameter_table(modules)
    total = sum(n for _, n in rows)
    print(
        f"{title}: {config.model_type}, {config.num_hidden_layers} layers"
        + (" (one shared)" if config.shares_layers else "")
        + f", hidden {config.hidden_size}"
        + (f", embedding {config.embedding_width}" if config.embedding_width != config.hidden_size else "")
        + f", {config.num_attention_heads} heads, FFN {config.intermediate_size}, vocab {config.vocab_size}"
    )
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>13,}  {100 * n / total:5.1f}%")
    print(f"  {'total':<{width}}  {total:>13,}")


@command("tokenize")
def tokenize_cmd(
    text: Annotated[str, "the text to tokenize"],
    *,
    model: Annotated[str, "a model folder, or a vocab.txt / tokenizer.json file"],
    pair: Annotated[str | None, "a second text: [CLS] A [SEP] B [SEP]"] = None,
    max_length: Annotated[int | None, "truncate to this many tokens (longest first for pairs)", COUNT] = None,
) -> None:
    """Show the word pieces, ids and segment ids BERT sees for a text (or a pair)."""
    from bertkit.vocab import load_tokenizer

    tok = load_tokenizer(model)
    if max_length is not None:
        tok.check_max_length(max_length, pair is not None, f"--max-length {max_length}")
    enc = tok.encode(text, pair, max_length=max_length)
    width = max(len(t) for t in enc.tokens)
    print(f"{len(enc.ids)} tokens")
    for i, (t, idx, seg, (a, b)) in enumerate(zip(enc.tokens, enc.ids, enc.token_type_ids, enc.offsets, strict=True)):
        print(f"  {i:>4}  {t:<{width}}  {idx:>6}  segment {seg}  chars {a}:{b}")
    print("ids:", " ".join(map(str, enc.ids)))


@command("tokenizer train")
def tokenizer_train_cmd(
    files: Annotated[list[str], "text files, one or more sentences per line"],
    *,
    out: Annotated[str, "folder to write vocab.txt, tokenizer.json and tokenizer_config.json"],
    vocab_size: Annotated[int, "vocabulary size including the 5 special tokens", Range(6, 1_000_000)] = 21128,
    min_frequency: Annotated[int, "drop pieces seen fewer times than this", NON_NEGATIVE] = 2,
    lowercase: Annotated[bool, "lower-case and strip accents (uncased model; WordPiece only)"] = True,
    kind: Annotated[
        Literal["wordpiece", "bpe"],
        "WordPiece (BERT, ALBERT, ELECTRA) or byte-level BPE (RoBERTa: vocab.json + merges.txt)",
    ] = "wordpiece",
) -> None:
    """Train a WordPiece vocabulary (CJK-aware: one token per Chinese character) or RoBERTa's byte-level BPE."""
    from bertkit.tokenizer import Tokenizer

    for f in files:
        if not Path(f).is_file():
            raise BertkitError(f"{f}: no such file")
    held = [n for n in ("config.json", "vocab.txt", "vocab.json", "tokenizer.json") if (Path(out) / n).exists()]
    if held:
        raise BertkitError(
            f"--out {out} already holds a tokenizer or model ({', '.join(held)}); a new vocabulary there would "
            "no longer match its weights: choose an empty or new folder"
        )
    if kind == "bpe":
        from bertkit.bpe import ByteLevelBPETokenizer
        from bertkit.tokenizer import read_lines

        tok = ByteLevelBPETokenizer.train(
            read_lines([Path(f) for f in files]),
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            show_progress=sys.stderr.isatty(),
        )
        tok.save(out)
        print(f"wrote {out}/vocab.json and merges.txt with {tok.vocab_size} tokens")
        return
    tok = Tokenizer.train(
        files,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        lowercase=lowercase,
        show_progress=sys.stderr.isatty(),
    )
    tok.save(out)
    print(f"wrote {out}/vocab.txt with {tok.vocab_size} tokens")
    if tok.vocab_size > vocab_size:
        print(
            f"note: {tok.vocab_size} tokens, more than --vocab-size {vocab_size}: every character of the corpus "
            "(and its ## continuation) is kept, so the alphabet alone needs that many"
        )
