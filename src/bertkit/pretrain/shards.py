"""Pretraining data, second step: documents -> tokenised, memory-mapped shards; and the word starts that
whole-word and span masking need (and ERNIE's entity masking, with entities as the words: `entity_file`,
`builtin_entities`).

Instance building reads the shards through `TokenShards.document(i)`.

Shards (`build_shards` / `load_shards`), one folder per (corpus, format, tokenizer):
- `tokens.bin`: every kept sentence's token ids back to back, no special tokens; uint16 when the vocabulary
  fits (half the disk and page cache of int32), else int32.
- `sentence_offsets.bin` / `document_offsets.bin`: int64 CSR-style offsets (n + 1 entries each) into
  tokens and into sentences. All three are raw little-endian arrays, appended to while tokenising, so
  memory stays flat however large the corpus; `meta.json` describes them and is written last.
- The folder name is a hash of the source files (path, size, mtime), the format, the tokenizer's full
  serialisation (vocabulary, normaliser, WordPiece settings: anything that changes ids) and
  `FORMAT_VERSION`. Same inputs -> the existing folder is loaded, nothing is tokenised again; rebuilding
  gives byte-identical arrays.
- A build happens in `cache_dir/.tmp-<hash>-<pid>` and is renamed into place only when complete, so a crash
  or a bad file leaves no folder that looks complete (a process killed with SIGKILL can leave its `.tmp-`
  folder behind; it is never read, and deleting it is safe).
- Sentences that tokenise to nothing are dropped, then documents left empty. A one-sentence document is
  kept: its sentence can still be the B side of a random pair.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError, DataError, require_file
from bertkit.pretrain.corpus import (
    BuiltinCorpus,
    ByteCounter,
    Corpus,
    Source,
    builtin_names,
    check_format,
    corpus_items,
    describe_corpus,
    iter_documents,
    resolve_corpus,
)
from bertkit.pretrain.masking import Segmenter, make_segmenter, sequence_word_ids
from bertkit.tokenizer import Tokenizer

FORMAT_VERSION = 1

# Sentences per encode_batch call. The Encoding objects it returns hold Python lists of tokens, offsets and
# word ids (~0.5 KB per token), so the chunk, not the document batch, bounds memory: 1024 sentences of a
# news corpus is ~40k tokens, ~20 MB. Larger chunks gain nothing: Rust already has enough to parallelise.
_ENCODE_SENTENCES = 1024
_TOKEN_DTYPES = (np.dtype("<u2"), np.dtype("<i4"))
_OFFSET_DTYPE = np.dtype("<i8")
_FILES = ("tokens.bin", "sentence_offsets.bin", "document_offsets.bin")


# ---- shards -----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class TokenShards:
    """Token ids of a corpus with sentence and document boundaries, memory-mapped read-only."""

    folder: Path
    tokens: np.ndarray = field(repr=False)  # (num_tokens,) uint16 or int32, all sentences back to back
    sentence_offsets: np.ndarray = field(repr=False)  # (num_sentences + 1,) int64, start of each in tokens
    document_offsets: np.ndarray = field(repr=False)  # (num_documents + 1,) int64, first sentence of each
    meta: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return len(self.document_offsets) - 1

    def document(self, i: int) -> list[np.ndarray]:
        """The sentences of document `i`, each a 1-D view into the memory map (no copy)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range for {n} documents")
        i %= n
        first, last = self.document_offsets[i], self.document_offsets[i + 1]
        starts = self.sentence_offsets[first : last + 1].tolist()
        return [self.tokens[a:b] for a, b in itertools.pairwise(starts)]

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


def build_shards(
    source: Source,
    tokenizer: Tokenizer,
    cache_dir: str | Path,
    fmt: str = "auto",
    batch_docs: int = 1000,
    progress: bool = True,
) -> TokenShards:
    """Tokenise a corpus into `cache_dir/<name>-<hash>/`, or load that folder if it is already there."""
    corpus = resolve_corpus(source)
    fmt = check_format(fmt, corpus)
    if batch_docs < 1:
        raise BertkitError(f"batch_docs={batch_docs}: must be at least 1")
    paths = [item.path if isinstance(item, BuiltinCorpus) else item for item in corpus_items(corpus)]
    sources = [_file_stamp(p) for p in paths]
    digest = _cache_key(corpus, sources, fmt, tokenizer)
    cache_dir = Path(cache_dir)
    first = corpus_items(corpus)[0]
    label = first.name if isinstance(first, BuiltinCorpus) else re.sub(r"[^\w-]", "_", first.stem)
    final = cache_dir / f"{label[:40]}-{digest[:16]}"
    if final.exists():
        return load_shards(final)

    tmp = cache_dir / f".tmp-{digest[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process that had our pid
    tmp.mkdir(parents=True)
    try:
        started = time.perf_counter()
        counts = _write_arrays(tmp, corpus, fmt, tokenizer, batch_docs, progress, sum(s["bytes"] for s in sources))
        meta = {
            "version": FORMAT_VERSION,
            "vocab_hash": vocab_hash(tokenizer),
            "vocab_size": tokenizer.vocab_size,
            "dtype": _token_dtype(tokenizer.vocab_size).str,
            "corpus": builtin_names(corpus),
            "format": fmt,
            "sources": sources,
            **counts,
            "seconds": round(time.perf_counter() - started, 3),
        }
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same shards first; theirs are identical
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_shards(final)


def load_shards(folder: str | Path) -> TokenShards:
    """Memory-map a shard folder written by `build_shards`; an incomplete or damaged one is a DataError."""
    folder = Path(folder)
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise DataError(
            f"{folder}: not a complete shard folder (no meta.json; an interrupted build?); delete it and rebuild"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        version, dtype = meta["version"], np.dtype(meta["dtype"])
        n_tokens, n_sents, n_docs = meta["num_tokens"], meta["num_sentences"], meta["num_documents"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_file}: unreadable shard metadata ({e!r}); delete the folder and rebuild") from e
    if version != FORMAT_VERSION:
        raise DataError(f"{folder}: shard format version {version}, this bertkit reads {FORMAT_VERSION}; rebuild")
    expected = {
        "tokens.bin": (dtype, n_tokens),
        "sentence_offsets.bin": (_OFFSET_DTYPE, n_sents + 1),
        "document_offsets.bin": (_OFFSET_DTYPE, n_docs + 1),
    }
    arrays = {}
    for name, (dt, length) in expected.items():
        path = folder / name
        size = path.stat().st_size if path.is_file() else None
        if size != length * dt.itemsize:
            raise DataError(
                f"{path}: {size} bytes, meta.json says {length * dt.itemsize}; "
                "the shards are damaged, delete the folder and rebuild"
            )
        arrays[name] = np.memmap(path, dtype=dt, mode="r", shape=(length,))
    tokens, sents, docs = (arrays[name] for name in _FILES)
    if sents[0] != 0 or sents[-1] != n_tokens or docs[0] != 0 or docs[-1] != n_sents:
        raise DataError(f"{folder}: offsets do not match meta.json; delete the folder and rebuild")
    return TokenShards(folder, tokens, sents, docs, meta)


def vocab_hash(tokenizer: Tokenizer) -> str:
    """sha256 of the vocabulary as vocab.txt holds it (tokens in id order, one per line), so that
    `sha256sum vocab.txt` gives the same value for a gap-free vocabulary."""
    vocab = tokenizer.get_vocab()
    text = "".join(token + "\n" for token in sorted(vocab, key=vocab.__getitem__))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token_dtype(vocab_size: int) -> np.dtype:
    return _TOKEN_DTYPES[0] if vocab_size <= 65535 else _TOKEN_DTYPES[1]


def _file_stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_key(corpus: Corpus, sources: list[dict[str, Any]], fmt: str, tokenizer: Tokenizer) -> str:
    # The full serialisation, not only the vocabulary: lower-casing, accent stripping and WordPiece's
    # max_input_chars_per_word all change the ids of the same text.
    key = {
        "version": FORMAT_VERSION,
        "corpus": builtin_names(corpus),
        "sources": sources,
        "fmt": fmt,
        "tokenizer": hashlib.sha256(tokenizer.backend.to_str().encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def _write_arrays(
    folder: Path,
    corpus: Corpus,
    fmt: str,
    tokenizer: Tokenizer,
    batch_docs: int,
    progress: bool,
    total_bytes: int,
) -> dict[str, int]:
    """Tokenise batch by batch, appending ids and offsets to the three files; return the counts."""
    dtype = _token_dtype(tokenizer.vocab_size)
    counter = ByteCounter()
    documents = iter_documents(corpus, fmt, counter)
    n_tokens = n_sentences = n_documents = 0
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenising", disable=not progress, file=sys.stderr)
    with (
        bar,
        open(folder / _FILES[0], "wb") as tokens_file,
        open(folder / _FILES[1], "wb") as sentences_file,
        open(folder / _FILES[2], "wb") as documents_file,
    ):
        zero = np.zeros(1, _OFFSET_DTYPE).tobytes()  # offsets start at 0; each batch appends the ends
        sentences_file.write(zero)
        documents_file.write(zero)
        while batch := list(itertools.islice(documents, batch_docs)):
            sentences = [s for doc in batch for s in doc]
            lengths = _encode_into(tokens_file, tokenizer, sentences, dtype)
            total = int(lengths.sum())
            # Drop sentences with no tokens, then documents with no sentences left.
            kept = lengths > 0
            doc_of_sentence = np.repeat(np.arange(len(batch)), [len(doc) for doc in batch])
            sentences_per_doc = np.bincount(doc_of_sentence[kept], minlength=len(batch))
            sentences_per_doc = sentences_per_doc[sentences_per_doc > 0]
            sentences_file.write((n_tokens + np.cumsum(lengths[kept])).astype(_OFFSET_DTYPE).tobytes())
            documents_file.write((n_sentences + np.cumsum(sentences_per_doc)).astype(_OFFSET_DTYPE).tobytes())
            n_tokens += total
            n_sentences += int(kept.sum())
            n_documents += len(sentences_per_doc)
            bar.update(counter.n - bar.n)
    if n_documents == 0:
        raise DataError(f"{describe_corpus(corpus)}: the corpus has text, but not one token with this tokenizer")
    return {
        "num_tokens": n_tokens,
        "num_sentences": n_sentences,
        "num_documents": n_documents,
        "bytes_of_text": counter.n,
    }


def _encode_into(tokens_file: BinaryIO, tokenizer: Tokenizer, sentences: list[str], dtype: np.dtype) -> np.ndarray:
    """Append the ids of `sentences` to `tokens_file`; return each sentence's length in tokens."""
    lengths = np.empty(len(sentences), _OFFSET_DTYPE)
    for start in range(0, len(sentences), _ENCODE_SENTENCES):
        # One call encodes the chunk on all cores (Rust); its ids are on disk before the next call.
        chunk = sentences[start : start + _ENCODE_SENTENCES]
        encoded = tokenizer.encode_ids(chunk)
        chunk_lengths = lengths[start : start + len(chunk)]
        chunk_lengths[:] = [len(e) for e in encoded]
        count = int(chunk_lengths.sum())
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype, count=count)
        tokens_file.write(ids.tobytes())
    return lengths


# ---- word boundaries for whole-word and span masking ----------------------------------------------------


# ---- entity units for ERNIE's entity-level masking ----------------------------------------------------------


ENTITY_TAGS = ("nr", "ns", "nt")  # PKU tags of named entities: person, place, organisation


def entity_file(path: str) -> Segmenter:
    """The entities of a user file (`--entities FILE`, one entity per line, UTF-8) as a segmenter whose words
    are the entities, found longest first in each sentence's text (`_longest_first`); every other character is a
    word of its own,
    so entity masking takes an entity whole and anything else token by token. Its key is the file's hash."""
    require_file(path, "entity file (one entity per line)")
    data = Path(path).read_bytes()
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); convert the entity file to UTF-8") from e
    for n, line in enumerate(lines, 1):
        if "\t" in line.strip():
            raise DataError(
                f"{path}: line {n} has a tab-separated second column; give one entity per line, nothing else"
            )
    entities = {e.strip() for e in lines} - {""}
    if not entities:
        raise DataError(f"{path}: the entity file has no entities; give one entity per line")
    return Segmenter(f"entities:{path}", f"entities-{hashlib.sha256(data).hexdigest()[:16]}", _longest_first(entities))


def _longest_first(entities: set[str]) -> Callable[[str], list[str]]:
    """Entities found longest first over the whole text (then leftmost), each character in at most one; the
    rest one character a word. Longest first, not left to right: in 部长孙家正 the person 孙家正 wins over 长孙,
    which a left-to-right longest match would take first and so cut the person."""
    lengths = sorted({len(e) for e in entities}, reverse=True)

    def cut(text: str) -> list[str]:
        taken = [0] * (len(text) + 1)  # taken[i]: length of the entity starting at i; -1 inside one
        for n in lengths:
            if n > len(text):
                continue
            for i in range(len(text) - n + 1):
                if taken[i] == 0 and text[i : i + n] in entities and not any(taken[i : i + n]):
                    taken[i] = n
                    taken[i + 1 : i + n] = [-1] * (n - 1)
        out, i = [], 0
        while i < len(text):
            n = max(taken[i], 1)
            out.append(text[i : i + n])
            i += n
        return out

    return cut


def tagged_entities(lines: Iterable[Sequence[tuple[str, str]]]) -> set[str]:
    """The named entities of (word, tag) lines (`builtin.peoples_daily_tagged`): words tagged nr / ns / nt, a
    run of nr words joined (the corpus tags a surname and a given name apart: 江/nr 泽民/nr is one person)."""
    entities: set[str] = set()
    for line in lines:
        person = ""
        for word, tag in line:
            tag = tag.split("]")[0]  # a bracketed compound's last word carries its own tag, then "]nt"
            word = word.removeprefix("[")
            if tag == "nr":
                person += word
                continue
            if person:
                entities.add(person)
                person = ""
            if tag in ENTITY_TAGS:
                entities.add(word)
        if person:
            entities.add(person)
    return {e for e in entities if len(e) > 1}  # one character is one token: masking it whole changes nothing


@lru_cache(maxsize=1)
def builtin_entities() -> Segmenter:
    """The entities the built-in People's Daily tags (`tagged_entities`), matched like a user's entity file;
    its key is the hash of the sorted entity list, so a change in how they are read never reads a stale cache."""
    from bertkit.builtin import peoples_daily_tagged

    entities = tagged_entities(peoples_daily_tagged())
    digest = hashlib.sha256("\n".join(sorted(entities)).encode("utf-8")).hexdigest()[:16]
    return Segmenter("entities:peoples-daily", f"entities-{digest}", _longest_first(entities))


WORD_START_BIT = 1 << 24  # set on a token id that begins a word (see MarkedDocuments); ids are < 2**24
ENTITY_START_BIT = 1 << 25  # set on a token id that begins an entity unit (ERNIE's entity masking), the same way


def word_starts(
    shards: TokenShards, tokens: Sequence[str], progress: bool = True, segmenter: Segmenter | None = None
) -> np.ndarray:
    """(num_tokens,) uint8 memory map: 1 where a token begins a word, cached as `word_starts-KEY.bin` in the shards.

    Words are what `masking.sequence_word_ids` finds in each sentence with `segmenter` (jieba when None) for
    Chinese, `##`-joined word pieces otherwise. Segmenting is the slow part of whole-word masking (jieba manages
    ~100k characters a second), and a sentence's words never change, so it is done once per corpus, tokenizer
    and segmenter, like the shards themselves, and written atomically (temp file, then rename). KEY is the
    segmenter's `key` (jieba's version, a word file's content hash): another segmenter never reads this cache.
    """
    segmenter = segmenter or make_segmenter("jieba")
    path = shards.folder / f"word_starts-{segmenter.key}.bin"
    n = shards.num_tokens
    if path.is_file() and path.stat().st_size == n:
        return np.memmap(path, dtype=np.uint8, mode="r", shape=(n,))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    offsets = shards.sentence_offsets
    try:
        with open(tmp, "wb") as f:
            for s in tqdm(
                range(len(offsets) - 1),
                desc=f"finding words ({segmenter.spec})",
                unit="sent",
                disable=not progress,
                mininterval=0.5 if sys.stderr.isatty() else 30,
            ):
                ids = shards.tokens[offsets[s] : offsets[s + 1]]
                w = sequence_word_ids([tokens[i] for i in ids], ("[UNK]",), segmenter.cut)  # (n,)
                starts = np.ones(len(w), dtype=np.uint8)
                starts[1:] = w[1:] != w[:-1]
                f.write(starts.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n,))


class MarkedDocuments:
    """Documents whose token ids carry `WORD_START_BIT` on each word's first token, and with `entity_starts`
    (ERNIE: `word_starts` with an entity segmenter, `masking.entity_file` / `builtin_entities`) also
    `ENTITY_START_BIT` on each entity unit's first token: a second bit, so one corpus serves a run whose
    stages mask phrases (segmenter words) and then entities.

    Instance building (pairs.py) only concatenates and trims sentence arrays, so a mark travels with its
    token into the instance for free; `PretrainingData` strips the bits off and turns them into word ids there.
    """

    def __init__(self, shards: TokenShards, starts: np.ndarray, entity_starts: np.ndarray | None = None):
        self.shards, self.starts, self.entity_starts = shards, starts, entity_starts

    def __len__(self) -> int:
        return len(self.shards)

    def document(self, i: int) -> list[np.ndarray]:
        first, last = self.shards.document_offsets[i], self.shards.document_offsets[i + 1]
        bounds = self.shards.sentence_offsets[first : last + 1].tolist()
        sentences = [
            self.shards.tokens[a:b].astype(np.int64) | (self.starts[a:b].astype(np.int64) * WORD_START_BIT)
            for a, b in itertools.pairwise(bounds)
        ]
        if self.entity_starts is not None:
            for s, (a, b) in zip(sentences, itertools.pairwise(bounds), strict=True):
                s |= self.entity_starts[a:b].astype(np.int64) * ENTITY_START_BIT
        return sentences
