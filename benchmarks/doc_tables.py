"""Tables of measured figures, written into the docs by the scripts that measure them.

A page holds one block per table, placed there once by a person:

    <!-- table NAME: written by `COMMAND`; do not edit by hand -->
    ...
    <!-- end table NAME -->

`write_table` replaces what lies between the two markers (and the command in the first): a caption naming the
machine (CPU model, and which native bf16 it has: avx512_bf16, amx_bf16, or AVX2 only), the torch version, the
date and the command, then the markdown table and an optional note. Figures copied by hand drift from the code
that measured them and lose the machine they came from; a block rewritten by its script cannot. Choices:

- A page without the block is an error, not an append: where a table goes in a page is a person's choice,
  made once; the script fills it in ever after. `require_blocks` checks this before a long measurement starts.
- Everything outside the block is left byte for byte, and the page is replaced atomically (a temporary file in
  the same folder, then a rename), so an interrupted run never leaves half a page.
- The block is found by its name alone, so a run with other flags (or another command) still finds it and
  rewrites the command it names.

    python benchmarks/doc_tables.py docs/performance.md docs/results.md     # list the generated blocks
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bertkit.errors import BertkitError

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^<!-- table (?P<name>[\w.-]+): written by `(?P<command>[^`\n]*)`; do not edit by hand -->$", re.M)
END = "<!-- end table {name} -->"


class DocTableError(BertkitError):
    """A page that has no block for a table, or whose blocks are malformed."""


@dataclass(frozen=True)
class DocTable:
    """One generated block of a page: its name, the command its marker names, and what lies inside."""

    name: str
    command: str
    body: str


def begin_marker(name: str, command: str) -> str:
    return f"<!-- table {name}: written by `{command}`; do not edit by hand -->"


def _blocks(text: str, page: Path) -> list[tuple[re.Match, int, int]]:
    """(begin match, start of the body, end of the body) for every block, in page order."""
    out, names = [], set()
    for m in BEGIN.finditer(text):
        name = m["name"]
        if name in names:
            raise DocTableError(f"{page}: two blocks named table {name}; keep one")
        names.add(name)
        end = text.find(END.format(name=name), m.end())
        if end < 0:
            raise DocTableError(f"{page}: table {name} has no closing line {END.format(name=name)}; add it")
        out.append((m, m.end() + 1, end))
    return out


def read_tables(page: Path) -> list[DocTable]:
    """Every generated block of a page, in page order."""
    page = Path(page)
    text = page.read_text(encoding="utf-8")
    return [DocTable(m["name"], m["command"], text[start:end]) for m, start, end in _blocks(text, page)]


def require_blocks(page: Path, names: list[str], command: str = "COMMAND") -> None:
    """Fail now, in one line, if `page` lacks a block for any of `names` (before a run that takes minutes)."""
    page = Path(page)
    if not page.is_file():
        raise DocTableError(f"{page}: no such page; give the folder of the docs (--docs-dir)")
    have = {t.name for t in read_tables(page)}
    for name in names:
        if name not in have:
            raise DocTableError(
                f"{page} has no block for table {name}: add the lines '{begin_marker(name, command)}' and "
                f"'{END.format(name=name)}' where the table belongs"
            )


def cpu_flags() -> set[str] | None:
    """The CPU's flags from /proc/cpuinfo; None where there is no such file."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    return set(flags[1].split()) if flags else set()


def native_bf16_kind() -> str:
    """ "amx_bf16", "avx512_bf16" or "none": the kind of CPU a table of bf16 and int8 speeds holds for."""
    have = cpu_flags() or set()
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in have), "none")


def cpu_kind() -> str:
    """The CPU's model name and which native bf16 it has, from /proc/cpuinfo: what bf16 speed depends on."""
    have = cpu_flags()
    if have is None:
        import platform

        return f"{platform.processor() or platform.machine()} (CPU flags unknown)"
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in have]
    bf16 = ", ".join(native) if native else ("AVX2 only" if "avx2" in have else "no AVX2")
    return f"{' '.join(model[1].split()) if model else 'unknown CPU'} ({bf16})"


def caption(command: str) -> str:
    import torch

    today = datetime.date.today().isoformat()
    return (
        f"Measured on {cpu_kind()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {today}, "
        f"by `{command}`."
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under a header of {len(header)}: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_table(page: Path, name: str, header: list[str], rows: list[list[str]], command: str, note: str = "") -> None:
    """Replace the block `name` of `page` with a caption, the table and `note`; nothing else in the page changes."""
    page = Path(page)
    if "`" in command or "\n" in command:
        raise DocTableError(f"table {name}: the command may not hold a backquote or a newline: {command!r}")
    require_blocks(page, [name], command)
    text = page.read_bytes().decode("utf-8")  # bytes, so that line endings and the rest stay exactly as they are
    m, start, end = next(b for b in _blocks(text, page) if b[0]["name"] == name)
    body = caption(command) + "\n\n" + markdown_table(header, rows) + "\n\n" + (note.strip() + "\n\n" if note else "")
    new = text[: m.start()] + begin_marker(name, command) + "\n" + body + text[end:]
    if new == text:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{page.name}.", dir=page.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new.encode("utf-8"))
        os.chmod(tmp, page.stat().st_mode & 0o777)
        os.replace(tmp, page)
    except BaseException:
        os.unlink(tmp)
        raise


# What the benchmark scripts share: two flags, the command that ran, and a one-line exit on a missing block.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write-docs", action="store_true", help="after printing, write the table(s) into the docs page"
    )
    parser.add_argument(
        "--docs-dir", type=Path, default=ROOT / "docs", help="folder of the pages --write-docs writes (default: docs)"
    )


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that ran, as a reader would type it from the repository root; `--docs-dir` is left out (it
    says where the table went, not how it was measured)."""
    path = Path(script).resolve()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    args, words = [], iter(sys.argv[1:] if argv is None else argv)
    for word in words:
        if word == "--docs-dir":
            next(words, None)
        elif not word.startswith("--docs-dir="):
            args.append(word)
    return shlex.join(["python", str(shown), *args])


def exit_on_error(fn, *args, **kwargs):
    """Call `fn`; a DocTableError ends the script with its one line and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except DocTableError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="+", type=Path)
    p.add_argument("--require", nargs="+", default=[], help="fail (exit 2) unless every page has these blocks")
    p.add_argument("--command", default="COMMAND", help="the command that writes them (in the error's marker)")
    args = p.parse_args()
    for page in args.pages:
        if args.require:
            exit_on_error(require_blocks, page, args.require, args.command)
            continue
        for t in exit_on_error(read_tables, page):
            print(f"{page}: table {t.name}, written by `{t.command}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
