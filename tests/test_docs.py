"""The docs say what the code does: every `bertkit` command shown in README.md and docs/*.md parses with the CLI's
own parser and, cut to a few steps of a tiny model, runs (the smoke section below), the README stays short, and
no page or module tells history (work periods or ticket numbers).

A command is a line of a fenced code block that runs `bertkit ...` (after an optional `$ ` prompt and `NAME=value`
assignments), `torchrun ... -m bertkit.cli ...` or `python -m bertkit.cli ...`, also after a pipe. Lines ending in
`\\` are joined first; `# comments` are dropped, and each command is cut at the next pipe, `;`, `&&` or
redirection.
"""

import csv
import dataclasses
import functools
import glob
import io
import itertools
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from helpers import one_thread  # noqa: F401  (tiny models: one thread)

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


# ---- smoke: the documented commands run ----------------------------------------------------------------------
# Each distinct documented command runs in-process in one shared working folder, so that the `runs/pd/model` one
# command writes is the model the next one reads (producers run first), with its sizes cut by the tables below
# and the built-in corpora cut to their first SMOKE_DOCUMENTS documents. All of it takes about a minute on 2 cores.

TINY = "<tiny>"  # the model the `smoke_folder` fixture pretrains once
# Placeholders in the docs -> what the smoke run gives them: TINY, or a path in the working folder.
SUBSTITUTE = {
    "path/to/bert-base-chinese": TINY,
    "path/to/all-MiniLM-L6-v2": TINY,  # tests/test_embed.py and test_export.py run the real one
    "path/to/any/hf-bert-folder": TINY,
    "M": TINY,
    "runs/pretrain-zh/model": TINY,  # results.md's model comes from `make pretrain-zh`, not a documented line
    "runs/demo/pretrain/model": TINY,  # `make demo`'s model (distillation.md's teacher)
    "/shared/corpus": "corpus",  # the user's text folder (the fixture writes corpus/, my-texts/, legal/)
    "/shared/runs/base": "runs/shared-base",
    "runs/rd/train.jsonl": "pairs.jsonl",  # the built-in training pairs: 10,000 of them are minutes for a smoke run
}
# Flags forced on every run of a command (replacing the documented value): a few steps, short sequences. A run
# ends at step 3 with its step-2 checkpoint kept, as if interrupted, so that the documented --resume has one.
SHRINK = {
    "pretrain": {"--steps": "3", "--batch-size": "4", "--eval-every": "3", "--save-every": "2"},
    "distill": {
        "--steps": "3",
        "--batch-size": "4",
        "--eval-every": "3",
        "--save-every": "2",
        "--max-seq-length": "32",
    },
    "finetune": {"--epochs": "1", "--max-train-examples": "32", "--max-eval-examples": "16", "--max-seq-length": "32"},
    "baseline": {"--max-train-examples": "32", "--max-eval-examples": "16"},  # `compare` needs finetune's test set
    "evaluate": {"--max-eval-examples": "16"},
    "distill --task": {"--epochs": "1", "--max-train-examples": "32", "--max-eval-examples": "16", "--batch-size": "4"},
    "attention": {"--head": "1"},  # the tiny model has one head
    "word2vec train": {"--epochs": "1", "--dim": "16", "--min-count": "1"},
    "elmo train": {"--steps": "3", "--hidden-size": "16", "--embedding-size": "8", "--batch-size": "4"}
    | {"--eval-every": "3", "--save-every": "2"},
    "elmo finetune": {"--epochs": "1", "--max-train-examples": "32", "--max-chars": "32"},
    "generate": {"--max-new-tokens": "4"},
    "embed-train": {"--epochs": "1", "--batch-size": "8", "--max-train-examples": "32", "--max-seq-length": "32"}
    | {"--save-every": "2"},
    "mine-negatives": {"--count": "1"},
}
NEW_MODEL = {"--hidden-size": "64", "--num-hidden-layers": "2", "--vocab-size": "1000"}  # pretrain without --init
SHORT = {"--max-seq-length": "32"}  # pretrain without --phases (which sets its own lengths)
SMOKE_DOCUMENTS = 200
# Documented commands that are only parsed, one reason each (keyed by command, or by --task).
PARSE_ONLY = {
    "serve": "a server runs until stopped; tests/test_serve.py starts the real process",
    "qa": "needs the user's SQuAD / CMRC files; tests/test_qa.py runs the task on its own fixture",
    "multiple-choice": "needs the user's multiple-choice file; tests/test_finetune_loop.py runs the task",
}
STAGE = {
    "pretrain": 0,
    "tokenizer": 0,
    "distill": 0.5,
    "baseline": 1,
    "finetune": 1,
    "distill --task": 1.5,  # reads a fine-tuned teacher
    "word2vec train": 0,
    "elmo train": 0,
    "retrieval data": 0,
    "mine-negatives": 0.5,
    "embed-train": 1,
    "index": 1.5,
}  # producers before the readers of their runs


def command_of(args: list[str]) -> str:
    """The row of SHRINK and STAGE: the subcommand, or `distill --task` (a fine-tuning run, not a pretraining one)."""
    if args[:1] == ["distill"] and "--task" in args:
        return "distill --task"
    if args[:1] in (["word2vec"], ["elmo"], ["retrieval"]):  # a group: its subcommands have flags of their own
        return " ".join(args[:2])
    return args[0] if args else ""


def shrunk(args: list[str]) -> list[str]:
    """`args` with placeholders substituted and sizes cut (SUBSTITUTE, SHRINK, NEW_MODEL, SHORT)."""
    args = [SUBSTITUTE.get(a, a) for a in args]
    forced = dict(SHRINK.get(command_of(args), {}))
    if args[0] == "pretrain":
        forced |= {} if "--init" in args else NEW_MODEL
        forced |= {} if "--phases" in args else SHORT
        if "--tokenizer" in args:
            forced.pop("--vocab-size", None)
    for flag, value in forced.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def smoke_plan() -> list[tuple[str, list[str], str | None]]:
    """(name, shrunk args, why it is only parsed or None) for each distinct documented command, producers first.

    Each page is a session of its own: a run that another page already wrote to the same --out (README's and
    fine-tuning.md's `runs/sent`) gets `-<page>` added, unless the command says --overwrite or --resume."""
    plan, seen, written, parsed_only = [], set(), set(), {}
    for name, args in sorted(COMMANDS, key=lambda c: STAGE.get(command_of(c[1]), 2)):
        run = shrunk(args)
        if "--help" in args or tuple(run) in seen:
            continue
        seen.add(tuple(run))
        task = run[run.index("--task") + 1] if "--task" in run[:-1] else ""
        reason = PARSE_ONLY.get(run[0]) or PARSE_ONLY.get(task)
        read = [a for a in run if a in parsed_only]
        if read and not reason:
            reason = f"reads {read[0]}, which only a parse-only command ({parsed_only[read[0]]}) writes"
        if "--out" in run[:-1]:
            at = run.index("--out") + 1
            if run[at] in written and not {"--overwrite", "--resume"} & set(run):
                run[at] += "-" + Path(name.split(":")[0]).stem
            written.add(run[at])
            if reason:
                parsed_only |= {run[at]: name, f"{run[at]}/model": name}
        plan.append((name, run, reason))
    return plan


SMOKE = smoke_plan()


@pytest.fixture(scope="module")
def smoke_folder(tmp_path_factory):
    """The shared working folder with the user's files the docs name, the built-in corpora cut short, and the
    tiny model pretrained once."""
    from bertkit.builtin import peoples_daily_lines, sentiment_reviews
    from bertkit.cli import main
    from bertkit.pretrain.corpus import BUILTIN_CORPORA

    root = tmp_path_factory.mktemp("docs-smoke")
    lines = ["".join(w for w, _ in line) for line in itertools.islice(peoples_daily_lines(), 300)]
    for folder in ("corpus", "my-texts", "legal"):
        (root / folder).mkdir()
        (root / folder / "part.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "texts.txt").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    (root / "terms.txt").write_text("北京\n人民日报\n", encoding="utf-8")
    with open(root / "train.csv", "w", encoding="utf-8", newline="") as f:  # fine-tuning.md's column names
        rows = csv.writer(f)
        rows.writerow(["review", "stars", "a", "b", "score"])
        for i, (text, label) in enumerate(sentiment_reviews()[0][:48]):
            rows.writerow([text, label, text[:9], text[-9:], i % 5])
    (root / "dev.csv").write_bytes((root / "train.csv").read_bytes())
    pairs = [{"query": line[:8], "positive": line} for line in lines[:40]]  # retrieval.md's training pairs
    (root / "pairs.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), "utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BERTKIT_CACHE", str(root / "cache"))
        for name, corpus in BUILTIN_CORPORA.items():
            cut = functools.partial(_first_documents, corpus.reader)
            mp.setitem(BUILTIN_CORPORA, name, dataclasses.replace(corpus, reader=cut))
        tiny = ["pretrain", "--out", str(root / "tiny"), "--corpus", str(root / "corpus")]
        assert main(shrunk(tiny)) == 0
        yield root


def _first_documents(reader, path, counter):
    return itertools.islice(reader(path, counter), SMOKE_DOCUMENTS)


@pytest.mark.parametrize("name,args,reason", SMOKE, ids=[name for name, _, _ in SMOKE])
def test_documented_command_runs(name, args, reason, smoke_folder, monkeypatch, capsys):
    from bertkit.cli import main

    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(smoke_folder)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("我喜欢吃苹果\nhello\n".encode())))  # embed's '-'
    args = [str(smoke_folder / "tiny" / "model") if a == TINY else a for a in args]
    args = [b for a in args for b in (sorted(glob.glob(a)) if "*" in a else [a]) or [a]]  # as the shell expands
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, f"`bertkit {shlex.join(args)}` exited {code}: {err[-1:]}"
