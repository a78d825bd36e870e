"""Files of `bertkit embed`: one text per line in; .npy, .safetensors or .jsonl vectors out, written beside
the target and renamed into place, so a failure never leaves a half-written file over a good one."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bertkit.errors import BertkitError, require_file

# ---- files: one text per line in, .npy / .safetensors / .jsonl out ---------------------------------------


OUTPUT_SUFFIXES = (".npy", ".safetensors", ".jsonl")


def read_lines(path: str, skip_empty: bool = False, skipped: list[int] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of `path` ('-' is stdin), streamed.

    Lines are read as bytes so that a line that is not UTF-8 is reported by number. An empty (or
    whitespace-only) line is an error, because output row i must be input line i; with `skip_empty` it is
    skipped and its number appended to `skipped`. A UTF-8 byte-order mark on the first line is dropped.
    """
    name = "stdin" if path == "-" else path
    if path != "-":
        require_file(path, "text file")
    f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below, stdin is not ours
    try:
        for n, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise BertkitError(
                    f"{name}: line {n} is not UTF-8 ({e.reason} at byte {e.start} of the line); convert it to UTF-8"
                ) from None
            if "\x00" in text:  # valid UTF-8, but no text file holds NUL: a binary or UTF-16 file
                raise BertkitError(f"{name}: line {n} holds NUL bytes (a binary or UTF-16 file?); give UTF-8 text")
            if n == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                if not skip_empty:
                    raise BertkitError(f"{name}: line {n} is empty; remove empty lines or pass --skip-empty")
                if skipped is not None:
                    skipped.append(n)
                continue
            yield n, text
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def check_output_file(path: str, flag: str = "--output") -> None:
    """An output file's path, checked before the model loads: not a folder, and not under a file. Why here: the
    write goes to a temporary file beside the target, and the OS's "Is a directory" would name that file."""
    p = Path(path)
    if p.is_dir():
        raise BertkitError(f"{flag} {path} is a folder; give a file path")
    if p.parent.exists() and not p.parent.is_dir():
        raise BertkitError(f"{flag} {path}: {p.parent} is a file, not a folder")


def check_output_path(path: str, tokens: bool) -> None:
    """Fail before any work: a suffix we cannot write, a folder that does not exist."""
    if path == "-":
        return
    p = Path(path)
    check_output_file(path)
    if p.suffix not in OUTPUT_SUFFIXES:
        raise BertkitError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)} (or be '-' for JSONL on stdout)")
    if tokens and p.suffix == ".npy":
        raise BertkitError(f"{path}: token vectors differ in length per text; write .safetensors or .jsonl")
    if not p.parent.is_dir():
        raise BertkitError(f"{p.parent}: no such folder for the output")


class VectorWriter:
    """Streams rows to `path` through a temporary file that replaces `path` only when `commit()` is called.

    .npy: one (n, dim) float32 array; the header is rewritten with the final n at the end.
    .safetensors: "embeddings" (n, dim) float32 and "lines" (n,) int64 input line numbers; for token
    vectors "embeddings" is (total tokens, H) and "offsets" (n + 1,) int64 gives text i the rows
    offsets[i]:offsets[i + 1]. The tensors are streamed to a side file and copied behind the header.
    .jsonl ('-' is stdout): {"line": n, "embedding": [...]}, or {"line": n, "tokens": [...],
    "embeddings": [[...], ...]} for token vectors; floats as the shortest text that reads back exactly.
    """

    NPY_HEADER = 128  # bytes: room for any (n, dim) shape, so the header can be rewritten in place

    def __init__(self, path: str, tokens: bool = False):
        check_output_path(path, tokens)
        self.path, self.tokens = path, tokens
        self.kind = "jsonl" if path == "-" else Path(path).suffix[1:]
        self.rows = 0  # texts written
        self.width: int | None = None
        self.lines: list[int] = []  # only for .safetensors: n int64s, small next to the vectors
        self.offsets: list[int] = [0]
        if path == "-":
            self.tmp, self.f = None, sys.stdout
            return
        self.tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
        self.f = open(
            self.tmp, "wb" if self.kind != "jsonl" else "w", encoding=None if self.kind != "jsonl" else "utf-8"
        )  # noqa: SIM115
        if self.kind == "npy":
            self.f.write(b"\0" * self.NPY_HEADER)

    def write(self, vectors: np.ndarray | list[np.ndarray], lines: list[int], token_strings=None) -> None:
        if self.kind == "jsonl":
            for i, (v, n) in enumerate(zip(vectors, lines, strict=True)):
                if self.tokens:
                    rows = ",".join(_json_floats(r) for r in v)
                    toks = json.dumps(token_strings[i], ensure_ascii=False)
                    self.f.write(f'{{"line": {n}, "tokens": {toks}, "embeddings": [{rows}]}}\n')
                else:
                    self.f.write(f'{{"line": {n}, "embedding": {_json_floats(v)}}}\n')
        else:
            for v in vectors if self.tokens else [vectors]:
                v = np.ascontiguousarray(v, dtype=np.float32)
                if v.size:
                    self.width = v.shape[-1]
                self.f.write(v.tobytes())
                if self.tokens:
                    self.offsets.append(self.offsets[-1] + len(v))
            self.lines.extend(lines)
        self.rows += len(lines)

    def commit(self, width: int) -> None:
        """Finish the file and move it into place. `width` is the vector length (for an empty output)."""
        width = self.width or width
        if self.kind == "npy":
            header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({self.rows}, {width}), }}"
            header = header.ljust(self.NPY_HEADER - 10 - 1) + "\n"  # magic (6) + version (2) + length (2)
            self.f.seek(0)
            self.f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        if self.kind == "safetensors":
            self._finish_safetensors(width)
        if self.tmp is None:
            self.f.flush()
            return
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp is not None:
            self.f.close()
            self.tmp.unlink(missing_ok=True)

    def _finish_safetensors(self, width: int) -> None:
        """Header + tensors: the vectors already written go behind a header, then the int64 tables."""
        self.f.close()
        data = self.tmp
        n_vectors = self.offsets[-1] if self.tokens else self.rows
        tables = {"lines": np.asarray(self.lines, dtype=np.int64)}
        if self.tokens:
            tables["offsets"] = np.asarray(self.offsets, dtype=np.int64)
        header: dict = {"__metadata__": {"format": "bertkit-embed"}}
        start = n_vectors * width * 4
        header["embeddings"] = {"dtype": "F32", "shape": [n_vectors, width], "data_offsets": [0, start]}
        for name, t in tables.items():
            header[name] = {"dtype": "I64", "shape": list(t.shape), "data_offsets": [start, start + t.nbytes]}
            start += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # keep the tensors 8-byte aligned
        self.tmp = data.with_name(data.name + ".st")
        self.f = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit()
        self.f.write(len(raw).to_bytes(8, "little") + raw)
        with open(data, "rb") as src:
            shutil.copyfileobj(src, self.f, 1 << 20)
        for t in tables.values():
            self.f.write(t.tobytes())
        data.unlink()


def _json_floats(v: np.ndarray) -> str:
    # str() of a float32 is the shortest decimal that reads back as the same float32.
    return "[" + ",".join(map(str, np.asarray(v, dtype=np.float32))) + "]"
