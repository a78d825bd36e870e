"""docs/bad-input.md is generated from the bad-input tests' cases, so that it says what the tests check.

`BERTKIT_WRITE_DOCS=1 .venv/bin/python -m pytest tests/test_bad_input_page.py` writes it anew.
"""

import importlib
import os
import re
from pathlib import Path

PAGE = Path(__file__).parent.parent / "docs" / "bad-input.md"
SOURCES = [  # (test module, how its cases are run)
    ("test_bad_input", "a command line"),
    ("test_bad_files", "a command line"),
    ("test_fuzz_http", "an HTTP request to `bertkit serve`"),
]

HEAD = """# Bad input: what each mistake gets

A mistake gets one line on stderr that names the flag, file, line or field and what to do, exit code 2, no
traceback, and every file that was there before is left as it was (`--overwrite` sets an old run aside and
deletes it only once the new one is complete; `--resume` never goes backwards). An HTTP request gets a 4xx
with `{"error": message}`, never a 5xx.

Each row below is a case that the tests run and check (this page is generated from them:
`tests/test_bad_input_page.py`). Beyond these rows, `tests/test_fuzz_cli.py` draws values at and beyond
every numeric flag's edges (NaN, inf, huge, negative, empty, not a number, not UTF-8; the bounds are the
command table's own) and file contents of every wrong kind (empty, binary, UTF-16, Latin-1, JSON of any
shape, tables with the wrong columns) for every command, and `tests/test_fuzz_http.py` draws bodies for
every endpoint; both assert the invariant above on every draw. `BERTKIT_FUZZ_EXAMPLES=N make test` runs N
draws per property instead of the fixed budget.

"""


def shorten(text: str, limit: int = 100) -> str:
    text = re.sub(r"(.)\1{19,}", lambda m: f"{m.group(1)}…({len(m.group(0))})", text.replace("{r}/", ""))
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return (text if len(text) <= limit else text[: limit - 1] + "…").replace("|", "\\|")


def render() -> str:
    rows = []
    for module, how in SOURCES:
        try:
            cases = importlib.import_module(module).CASES
        except ModuleNotFoundError:
            continue
        rows += [(kind, what, command, expected, how) for kind, what, command, expected in cases]
    out = [HEAD]
    for kind in dict.fromkeys(kind for kind, *_ in rows):  # classes in the order they first appear
        out.append(f"## {kind[0].upper()}{kind[1:]}\n\n| mistake | {'command or request'} | what it gets |\n")
        out.append("| --- | --- | --- |\n")
        for k, what, command, expected, how in rows:
            if k == kind:
                shown = command if how.startswith("an HTTP") else f"bertkit {command}"
                out.append(f"| {shorten(what)} | `{shorten(shown)}` | …{shorten(expected)}… |\n")
        out.append("\n")
    return "".join(out).rstrip("\n") + "\n"


def test_the_bad_input_page_is_generated_from_the_cases():
    text = render()
    if os.environ.get("BERTKIT_WRITE_DOCS"):
        PAGE.parent.mkdir(exist_ok=True)
        PAGE.write_text(text, encoding="utf-8")
    assert PAGE.read_text(encoding="utf-8") == text, "run: BERTKIT_WRITE_DOCS=1 pytest tests/test_bad_input_page.py"
