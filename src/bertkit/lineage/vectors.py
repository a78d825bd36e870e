"""Static word vectors: the word2vec text and binary formats, nearest neighbours and analogies.

The formats are the original C tool's, which `gensim.models.KeyedVectors.load_word2vec_format` reads:
- text: a header line `V D`, then per word `word v1 … vD`. Values are written with 9 significant digits, the
  most a float32 needs to come back as the identical float32;
- binary: the header line, then per word its UTF-8 bytes, a space, D little-endian float32 and a newline.
Words hold no whitespace (both formats split on it); `save` refuses one that does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.errors import BertkitError, DataError


@dataclass
class WordVectors:
    words: list[str]
    vectors: np.ndarray  # (V, D) float32, row i is words[i]'s

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self._unit = self.vectors / np.maximum(norms, 1e-12)

    def vector(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise BertkitError(f"{word!r} is not in the vocabulary ({len(self.words):,} words)")
        return self.vectors[self.index[word]]

    def most_similar(self, positive: list[str], negative: list[str] = (), topn: int = 10) -> list[tuple[str, float]]:
        """The `topn` words nearest (cosine) to the mean of the unit vectors of `positive` minus `negative`'s,
        the query words left out: gensim's `most_similar` (3CosAdd for an analogy b - a + c)."""
        for w in [*positive, *negative]:
            self.vector(w)
        query = sum(self._unit[self.index[w]] for w in positive) - sum(self._unit[self.index[w]] for w in negative)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = self._unit @ query
        for w in [*positive, *negative]:
            scores[self.index[w]] = -np.inf
        best = np.argsort(-scores, kind="stable")[:topn]
        return [(self.words[i], float(scores[i])) for i in best]

    def save(self, path: str | os.PathLike, binary: bool) -> None:
        """Write in the word2vec format (written beside, then renamed into place)."""
        bad = next((w for w in self.words if not w or any(c.isspace() for c in w)), None)
        if bad is not None:
            raise BertkitError(f"the word {bad!r} holds whitespace, which the word2vec formats cannot store")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        V, D = self.vectors.shape
        rows = np.ascontiguousarray(self.vectors, dtype="<f4")
        with open(tmp, "wb") as f:
            f.write(f"{V} {D}\n".encode())
            if binary:
                for word, row in zip(self.words, rows, strict=True):
                    f.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                for word, row in zip(self.words, rows, strict=True):
                    f.write((word + " " + " ".join(f"{x:.9g}" for x in row.tolist()) + "\n").encode("utf-8"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordVectors:
        """Read a word2vec text or binary file (which one is decided from its first data line)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such vectors file")
        data = path.read_bytes()
        header, _, body = data.partition(b"\n")
        try:
            V, D = (int(x) for x in header.split())
        except ValueError:
            raise DataError(f"{path}: line 1 should be 'WORDS DIMENSIONS' (the word2vec format)") from None
        if V < 1 or D < 1 or V * D > len(body):  # each value takes a byte at least: before any allocation
            raise DataError(f"{path}: line 1 says {V} words of {D} values, which the file cannot hold")
        try:
            if _looks_binary(body, D):
                return cls._binary(path, body, V, D)
            return cls._text(path, body, V, D)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text at byte {e.start} (a word2vec text file is UTF-8)") from None
        except ValueError as e:
            raise DataError(f"{path}: a value is not a number ({str(e)[:60]})") from None

    @classmethod
    def _binary(cls, path: Path, body: bytes, V: int, D: int) -> WordVectors:
        words, rows, at = [], np.empty((V, D), np.float32), 0
        for i in range(V):
            while at < len(body) and body[at : at + 1] == b"\n":  # the newline after the previous vector
                at += 1
            space = body.find(b" ", at)
            if space < 0 or space + 1 + 4 * D > len(body):
                raise DataError(f"{path}: ends inside word {i + 1} of {V} (cut short?)")
            words.append(body[at:space].decode("utf-8", errors="replace"))
            rows[i] = np.frombuffer(body, "<f4", D, space + 1)
            at = space + 1 + 4 * D
        return cls(words, rows)

    @classmethod
    def _text(cls, path: Path, body: bytes, V: int, D: int) -> WordVectors:
        lines = body.decode("utf-8").splitlines()
        if len(lines) < V:
            raise DataError(f"{path}: the header says {V} words but there are {len(lines)} lines (cut short?)")
        words, rows = [], np.empty((V, D), np.float32)
        for i, line in enumerate(lines[:V]):
            word, *values = line.rstrip().split(" ")
            if len(values) != D:
                raise DataError(f"{path}: line {i + 2} has {len(values)} values, not {D}")
            words.append(word)
            rows[i] = np.array(values, dtype=np.float32)
        return cls(words, rows)


def _looks_binary(body: bytes, D: int) -> bool:
    """A text file's first line is the word and D decimal numbers; a binary file's first word is followed by
    4·D raw bytes, which are almost never all printable ASCII with D spaces."""
    first = body.split(b"\n", 1)[0]
    try:
        parts = first.decode("utf-8").rstrip().split(" ")
        [float(x) for x in parts[1:]]
        return len(parts) != D + 1
    except (UnicodeDecodeError, ValueError):
        return True
