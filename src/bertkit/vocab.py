"""Every tokenizer family in one place: importing this module imports each family's module, so that
`Tokenizer.from_folder` knows them all (the public `bertkit.Tokenizer` resolves here for that reason), and
`load_tokenizer` takes whatever path a command is given.

The dispatch itself is `Tokenizer.family_of` (tokenizer.py): a folder or tokenizer.json is byte-level BPE
(RoBERTa) when `ByteLevelBPETokenizer.recognises` it, and WordPiece (BERT, ALBERT_zh, ELECTRA) otherwise,
whose loader names what is missing. A new family is a subclass with `recognises`, imported here.
"""

from __future__ import annotations

from pathlib import Path

from bertkit.bpe import ByteLevelBPETokenizer  # importing it adds it to Tokenizer.families
from bertkit.errors import BertkitError
from bertkit.tokenizer import Tokenizer

__all__ = ["ByteLevelBPETokenizer", "Tokenizer", "has_tokenizer", "load_tokenizer", "tokenizer_from_folder"]


def tokenizer_from_folder(folder: str | Path) -> Tokenizer:
    """The tokenizer of a model folder, whichever family it is (`Tokenizer.from_folder`)."""
    return Tokenizer.from_folder(folder)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A model folder, a vocab.txt or a tokenizer.json, WordPiece or byte-level BPE."""
    p = Path(path)
    if p.is_dir():
        return Tokenizer.from_folder(p)
    if p.is_file():
        return Tokenizer.from_file(p) if p.suffix == ".json" else Tokenizer.from_vocab(p)
    raise BertkitError(f"{path}: no such folder or file (expected a model folder, vocab.txt or tokenizer.json)")
