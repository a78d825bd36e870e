"""The docs say what the code does: every `bertkit` command shown in README.md and docs/*.md parses with the CLI's
own parser, the README stays short, and no page or module tells history (work periods or ticket numbers).

A command is a line of a fenced code block that runs `bertkit ...` (after an optional `$ ` prompt and `NAME=value`
assignments), `torchrun ... -m bertkit.cli ...` or `python -m bertkit.cli ...`, also after a pipe. Lines ending in
`\\` are joined first; `# comments` are dropped, and each command is cut at the next pipe, `;`, `&&` or
redirection.
"""

import re
import shlex
from pathlib import Path

import pytest

import bertkit.cli  # noqa: F401  (importing registers the commands)
from bertkit.cli.table import build_parser
from bertkit.errors import BertkitError

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}  # fence languages whose lines are shell
HISTORY = re.compile(r"(?i)session [0-9]|issue [0-9]+")
OPERATORS = set("|&;<>")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MAX_README_LINES = 250
MIN_COMMANDS = 15


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of each shell line inside a fenced block, continuations joined."""
    found, fence, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip().lower() if fence is None else None
            pending = ""
            continue
        if fence is None or fence not in SHELL_BLOCKS:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        found.append((start, pending + stripped))
        pending = ""
    return found


def bertkit_arguments(line: str) -> list[list[str]]:
    """The argument lists (after `bertkit`) of every bertkit command in one shell line."""
    if "bertkit" not in line:
        return []
    if line.startswith("$ "):
        line = line[2:]
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # `#` still starts a comment at the start of a word
    segments, current, cut = [], [], False  # cut: the words after a redirection name a file, not a command
    for token in lexer:
        if token and set(token) <= OPERATORS:  # a pipe, `;`, `&&`, a redirection: the command ends here
            if ">" in token and current and current[-1].isdigit():  # `2>`: the digit is the redirection's
                current.pop()
            segments.append([] if cut else current)
            current, cut = [], "<" in token or ">" in token
        else:
            current.append(token)
    segments.append([] if cut else current)
    commands = []
    for segment in segments:
        words = list(segment)
        while words and ASSIGNMENT.match(words[0]):
            words.pop(0)
        if not words:
            continue
        if words[0] == "bertkit" or words[0].endswith("/bin/bertkit"):
            commands.append(words[1:])
        elif "-m" in words and words[0] in ("torchrun", "python", "python3", ".venv/bin/python"):
            i = words.index("-m")
            if i + 1 < len(words) and words[i + 1] == "bertkit.cli":
                commands.append(words[i + 2 :])
    return commands


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for number, line in shell_lines(page):
            for k, args in enumerate(bertkit_arguments(line)):
                name = f"{page.relative_to(ROOT)}:{number}" + (f"#{k + 1}" if k else "")
                found.append((name, args))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_enough_commands():
    assert len(COMMANDS) >= MIN_COMMANDS, [name for name, _ in COMMANDS]


@pytest.mark.parametrize("args", [args for _, args in COMMANDS], ids=[name for name, _ in COMMANDS])
def test_documented_command_parses(args):
    try:
        build_parser().parse_args(args)
    except BertkitError as e:
        pytest.fail(f"`bertkit {shlex.join(args)}` does not parse: {e}")
    except SystemExit as e:  # `--help` prints and exits 0
        assert e.code in (0, None), f"`bertkit {shlex.join(args)}` exited with {e.code}"


def test_the_extraction_reads_shell_as_a_reader_would():
    assert bertkit_arguments("$ OMP_NUM_THREADS=1 bertkit embed m --output v.npy  # a comment") == [
        ["embed", "m", "--output", "v.npy"]
    ]
    assert bertkit_arguments("cat t.txt | bertkit embed m > out.jsonl") == [["embed", "m"]]
    assert bertkit_arguments("torchrun --nproc-per-node 2 -m bertkit.cli pretrain --out r") == [
        ["pretrain", "--out", "r"]
    ]
    assert bertkit_arguments('bertkit fill-mask m "北[MASK]是 | 首都"') == [["fill-mask", "m", "北[MASK]是 | 首都"]]
    assert bertkit_arguments("make demo   # pretrain a small Chinese BERT, then bertkit finetune") == []


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_no_history_in_docs_or_code():
    files = [*PAGES, *(p for p in (ROOT / "src" / "bertkit").rglob("*") if p.is_file())]
    told = []
    for path in files:
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".so") or ".egg-info" in str(path):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if HISTORY.search(line):
                told.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not told, "history belongs in the git log, not in docs or code:\n" + "\n".join(told)
