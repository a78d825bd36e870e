"""Which tokenizer a path holds, WordPiece (BERT, ALBERT, ELECTRA) or byte-level BPE (RoBERTa): the one place
that knows both formats, so every command loads either without asking.

A folder or tokenizer.json is BPE when its model is BPE (tokenizer.json) or when it has merges.txt +
vocab.json and no vocab.txt; everything else is WordPiece, whose loader names what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertkit.bpe import ByteLevelBPETokenizer
from bertkit.errors import BertkitError
from bertkit.tokenizer import Tokenizer


def is_bpe(path: Path) -> bool:
    path = Path(path)
    tokenizer_json = path if path.is_file() else path / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            model = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("model") or {}
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return False  # the WordPiece loader reports the broken file
        return isinstance(model, dict) and model.get("type") == "BPE"
    if path.is_dir():
        return (path / "vocab.json").is_file() and not (path / "vocab.txt").is_file()
    return False


def tokenizer_from_folder(folder: str | Path) -> Tokenizer:
    """The tokenizer of a model folder, whichever kind it is."""
    folder = Path(folder)
    return ByteLevelBPETokenizer.from_folder(folder) if is_bpe(folder) else Tokenizer.from_folder(folder)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A model folder, a vocab.txt or a tokenizer.json, WordPiece or byte-level BPE."""
    p = Path(path)
    if p.is_dir():
        return tokenizer_from_folder(p)
    if p.is_file():
        if p.suffix == ".json":
            return ByteLevelBPETokenizer.from_file(p) if is_bpe(p) else Tokenizer.from_file(p)
        return Tokenizer.from_vocab(p)
    raise BertkitError(f"{path}: no such folder or file (expected a model folder, vocab.txt or tokenizer.json)")
