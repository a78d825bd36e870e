"""A fuzzer over every command: flag values at and beyond every edge, and file contents of every wrong kind.

The invariant, for every draw: exit 0 with a result, or exit 2 with exactly one stderr line that names the flag
or file; never a traceback; every file that was there before byte-identical afterwards. The flags and their
bounds come from the command table itself (`flag_limits`), so a new numeric flag is fuzzed without a line here.

`make test` runs a fixed, derandomised budget; `BERTKIT_FUZZ_EXAMPLES=N` runs N examples per test. What a
larger budget found is kept below as explicit examples.
"""

from __future__ import annotations

import json
import math
import shutil
import string

import pytest
from helpers import fuzz_settings, model_folders, one_thread, snapshot  # noqa: F401 - an autouse fixture
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from bertkit.cli import main
from bertkit.cli.table import COMMANDS, Range, flag_limits
from bertkit.retrieval.benchmark import RetrievalSet, write_beir

FUZZ = fuzz_settings(150, HealthCheck.function_scoped_fixture)

# Each command's quick valid call: {r} the fixture's folders (never written), {o} a fresh output folder.
BASE = {
    "params": "params bert-tiny-chinese --heads classifier --num-labels 3",
    "tokenize": "tokenize 我们很好 --model {r}/plain --pair 今天 --max-length 8",
    "tokenizer train": "tokenizer train {r}/corpus.txt --out {o}/vocab --vocab-size 100",
    "pretrain": (
        "pretrain --out {o}/run --corpus {r}/docs.txt --cache-dir {c} --preset bert-tiny-chinese --steps 2 "
        "--batch-size 4 --vocab-size 100 --eval-every 100"
    ),
    "distill": (
        "distill --teacher {r}/mlm --out {o}/d --corpus {r}/docs.txt --cache-dir {c} --steps 2 --batch-size 4 "
        "--max-seq-length 16 --eval-every 100"
    ),
    "finetune": (
        "finetune --task classification --model {r}/plain --out {o}/ft --train {r}/train.csv --dev {r}/train.csv "
        "--epochs 1 --lr 1e-3 --max-seq-length 16"
    ),
    "baseline": "baseline --task classification --train {r}/train.csv --dev {r}/train.csv --out {o}/bl",
    "compare": "compare {r}/run-a {r}/run-b --resamples 100",
    "evaluate": "evaluate --model {r}/clf --task classification --data {r}/train.csv",
    "predict": "predict --model {r}/clf --input {r}/texts.txt --output {o}/p.jsonl",
    "fill-mask": "fill-mask {r}/mlm 北[MASK]",
    "generate": "generate {r}/gpt 我们 --max-new-tokens 3 --top-k 5",
    "embed": "embed {r}/plain --input {r}/texts.txt --output {o}/e.npy",
    "similarity": "similarity {r}/plain 我们 很好",
    "attention": "attention {r}/plain 我们很好 --out {o}/att --layer 1 --head 1",
    "word2vec train": (
        "word2vec train --out {o}/w2v --corpus {r}/corpus.txt --unit char --min-count 1 --dim 8 --epochs 1 "
        "--engine torch"
    ),
    "word2vec neighbours": "word2vec neighbours {r}/w2v/vectors.bin 我 --top 3",
    "word2vec analogy": "word2vec analogy {r}/w2v/vectors.bin 我 们 今 --top 3",
    "elmo train": (
        "elmo train --out {o}/elmo --corpus {r}/corpus.txt --steps 2 --hidden-size 8 --embedding-size 4 "
        "--batch-size 4 --eval-every 2"
    ),
    "elmo finetune": (
        "elmo finetune --model {r}/elmo/model --task sentiment --out {o}/ef --epochs 1 --max-train-examples 20 "
        "--max-chars 16"
    ),
    "embed-train": (
        "embed-train --model {r}/plain --train {r}/pairs.jsonl --out {o}/et --batch-size 4 --max-seq-length 16"
    ),
    "mine-negatives": "mine-negatives {r}/plain --input {r}/pairs.jsonl --output {o}/m.jsonl --ranks 0:3",
    "retrieval data": "retrieval data --out {o}/rd",
    "retrieval eval": "retrieval eval --data {r}/beir --out {o}/re --bm25 chars",
    "index": "index {r}/plain --input {r}/texts.txt --out {o}/idx",
    "search": "search {r}/idx --query 我们 --top-k 2",
    "serve": "serve {r}/plain",
    "export": "export {r}/plain --onnx {o}/m.onnx",
}
EXPENSIVE = {"export"}  # a valid draw exports and checks an ONNX graph: fuzzed with invalid values only


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    model_folders(root)
    (root / "texts.txt").write_text("我们很好\n今天一般\n", "utf-8")
    (root / "corpus.txt").write_text("我们今天在北京开会。\n大家都很好！\n" * 20, "utf-8")
    docs = ["我们今天在北京开会。大家都很好！", "他们明天去上海。天气不错。", "新年快乐，朋友们。世界经济发展。"]
    (root / "docs.txt").write_text("\n\n".join(d.replace("。", "。\n") for d in docs * 8), "utf-8")
    rows = [("我们很好", "pos"), ("今天很差", "neg"), ("很好很好", "pos"), ("差", "neg")] * 3
    (root / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), "utf-8")
    w2v = f"word2vec train --out {root}/w2v --corpus {root}/corpus.txt --unit char --min-count 1 --dim 8 --epochs 1"
    assert main([*w2v.split(), "--engine", "torch"]) == 0
    elmo = f"elmo train --out {root}/elmo --corpus {root}/corpus.txt --steps 1 --hidden-size 8 --embedding-size 4"
    assert main(elmo.split()) == 0
    pairs = [{"query": q, "positive": p} for q, p in (("我们", "我们很好"), ("今天", "今天一般"), ("很差", "差"))]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pairs), "utf-8")
    write_beir(root / "beir", RetrievalSet({"d1": "我们很好", "d2": "今天一般"}, {"q1": "我们"}, {"q1": {"d1": 1}}))
    assert main(f"index {root}/plain --input {root}/texts.txt --out {root}/idx".split()) == 0
    for run in ("run-a", "run-b"):
        args = f"baseline --task classification --train {root}/train.csv --dev {root}/train.csv --test "
        assert main((args + f"{root}/train.csv --out {root}/{run}").split()) == 0
    return root


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Outputs ({o}, emptied after every draw) and the shard cache ({c}, kept: it is not the user's)."""
    return tmp_path_factory.mktemp("fuzz-out"), tmp_path_factory.mktemp("fuzz-cache")


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """`serve` with valid flags would listen forever: its flags are checked, then nothing is started."""
    import bertkit.use.serve

    monkeypatch.setattr(bertkit.use.serve, "serve", lambda *args, **kwargs: None)


def run(argv: list[str], root, scratch, capsys) -> tuple[int, list[str]]:
    """Run one command; assert the invariant; return (exit code, stderr lines)."""
    out, _ = scratch
    before = snapshot(root)
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err) == 1 and err[0].startswith("bertkit: error:"), (argv, err)
    assert not any("Traceback" in line for line in err), (argv, err)
    assert snapshot(root) == before, argv
    return code, err


def base_argv(command: str, root, scratch) -> list[str]:
    out, cache = scratch
    return BASE[command].format(r=root, o=out, c=cache).split()


# ------------------------------------------------------------------------------------------- flag values
def edge_values(kind: type, limits: Range | None) -> list[str]:
    """Values at and beyond a flag's edges, as a user would type them."""
    values = ["nan", "inf", "-inf", "", "abc", "1e3", "0x10", "1_000", "\udcff", "-1", "0", "1", "99999999999999999999"]
    if kind is float:
        values += ["1e-300", "1e308", "-0.0", "0.5"]
    if limits is not None:
        for edge in (limits.low, limits.high):
            if edge is not None:
                values += [str(edge), str(edge - 1), str(edge + 1)]
                if kind is float:
                    values += [repr(edge - 1e-9), repr(edge + 1e-9)]
    return values


def cheap(command: str, value: str) -> bool:
    """A valid value that would make the quick call long (a billion steps, a vocabulary of a million) is not
    run: the fuzzer is about the edges of what is refused, and every draw must finish in seconds."""
    try:
        x = float(value)
    except ValueError:
        return True
    return command not in EXPENSIVE and not (math.isfinite(x) and abs(x) > 64)


FLAGS = sorted(
    (command, name, kind, limits)
    for command, fn in COMMANDS.items()
    for name, (kind, limits) in flag_limits(fn).items()
)


def in_range(kind: type, limits: Range | None, value: str) -> bool:
    try:
        x = kind(value)
    except ValueError:
        return False
    return (kind is int or math.isfinite(x)) and (limits is None or x in limits)


def check_flag_value(root, scratch, capsys, command: str, name: str, value: str) -> None:
    kind, limits = flag_limits(COMMANDS[command])[name]
    argv = base_argv(command, root, scratch)
    option = "--" + name.replace("_", "-")
    if option in argv:  # the base call's own value is replaced
        i = argv.index(option)
        del argv[i : i + 2]
    code, err = run([*argv, option, value], root, scratch, capsys)
    if not in_range(kind, limits, value):
        # argparse reads "-inf" after a list flag as an option of its own, and names it: fair enough
        named = option in err[0] or (value.startswith("-") and f"arguments: {value}" in err[0])
        assert code == 2 and named, (command, option, value, err)
    elif code == 2:  # a value in range that this call cannot honour says which flag
        assert option in err[0] or name.replace("_", "-") in err[0], (command, option, value, err)


@FUZZ
@given(st.sampled_from(FLAGS), st.data())
def test_every_numeric_flag_at_every_edge(root, scratch, capsys, flag, data):
    command, name, kind, limits = flag
    value = data.draw(st.sampled_from(edge_values(kind, limits)))
    if not in_range(kind, limits, value) or cheap(command, value):
        check_flag_value(root, scratch, capsys, command, name, value)


# What larger budgets found, kept: (command, flag, value)
KEPT_FLAGS = [
    ("pretrain", "max_seq_length", "8"),  # no instance fits: the message now names --max-seq-length
    ("embed", "batch_tokens", "1"),  # below the model's length: the message now names --batch-tokens
    ("baseline", "max_train_examples", "1"),  # one class: sklearn's traceback, now a one-line error
    ("finetune", "lr", "inf"),
]


@pytest.mark.parametrize("command, name, value", KEPT_FLAGS)
def test_kept_flag_values(root, scratch, capsys, command, name, value):
    check_flag_value(root, scratch, capsys, command, name, value)


# ------------------------------------------------------------------------------------------ file contents
def contents() -> st.SearchStrategy[bytes]:
    """What a careless user's file holds: nothing, binary, text in another encoding, JSON of any shape, a
    table with the wrong columns, or a good file cut short."""

    def nested(children):
        return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    json_values = st.recursive(scalars, nested, max_leaves=8)
    words = st.text(string.ascii_letters + "我们好差,\t\"'", max_size=12)
    return st.one_of(
        st.just(b""),
        st.binary(min_size=1, max_size=64),
        st.text(max_size=40).map(lambda t: t.encode("utf-16")),
        st.just("caf\xe9\n".encode("latin-1")),
        json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        st.lists(json_values, max_size=3).map(lambda rows: b"\n".join(json.dumps(r).encode() for r in rows)),
        st.lists(st.lists(words, min_size=1, max_size=3), max_size=4).map(
            lambda rows: "\n".join(",".join(r) for r in rows).encode()
        ),
        st.just(b"\xef\xbb\xbftext,label\n\xe5\xa5\xbd,pos\n"),  # UTF-8 with a BOM
    )


# (command, which file of the fixture the drawn bytes replace): the file as each command reads it
FILE_SLOTS = [
    ("predict", "texts.txt"),
    ("embed", "texts.txt"),
    ("finetune", "train.csv"),
    ("baseline", "train.csv"),
    ("evaluate", "train.csv"),
    ("tokenizer train", "corpus.txt"),
    ("pretrain", "docs.txt"),
    ("compare", "run-a/test_predictions.jsonl"),
    ("fill-mask", "mlm/config.json"),
    ("embed", "plain/config.json"),
    ("predict", "clf/config.json"),
    ("embed", "plain/model.safetensors"),
    ("tokenize", "plain/vocab.txt"),
    ("params", "plain/config.json"),
    ("attention", "plain/config.json"),
    ("word2vec train", "corpus.txt"),
    ("word2vec neighbours", "w2v/vectors.bin"),
    ("elmo train", "corpus.txt"),
    ("elmo finetune", "elmo/model/elmo_config.json"),
    ("elmo finetune", "elmo/model/vocab.txt"),
    ("embed-train", "pairs.jsonl"),
    ("mine-negatives", "pairs.jsonl"),
    ("retrieval eval", "beir/qrels/test.tsv"),
    ("retrieval eval", "beir/corpus.jsonl"),
    ("retrieval eval", "beir/queries.jsonl"),
    ("search", "idx/index.json"),
    ("search", "idx/documents.jsonl"),
    ("generate", "gpt/config.json"),
    ("generate", "gpt/model.safetensors"),
]


@FUZZ
@given(st.sampled_from(FILE_SLOTS), contents())
def test_every_file_of_every_kind(root, scratch, capsys, tmp_path, slot, content):
    check_file_content(root, scratch, capsys, tmp_path, slot, content)


# What larger budgets found, kept: ((command, file), content)
KEPT_FILES = [
    (("predict", "clf/config.json"), b"{}"),  # "a classifier head needs labels": now names config.json
    (("pretrain", "docs.txt"), b"!"),  # the error came after a progress bar: now before it, one line
    (("compare", "run-a/test_predictions.jsonl"), "caf\xe9\n".encode("latin-1")),  # a traceback: now one line
    (("fill-mask", "mlm/config.json"), b'{"\\n": 1}'),  # a key holding a newline split the message in two
]


@pytest.mark.parametrize("slot, content", KEPT_FILES)
def test_kept_file_contents(root, scratch, capsys, tmp_path, slot, content):
    check_file_content(root, scratch, capsys, tmp_path, slot, content)


def check_file_content(root, scratch, capsys, tmp_path, slot, content: bytes) -> None:
    command, name = slot
    copy = tmp_path / "r"  # a private copy of the fixture: the drawn bytes replace one of its files
    if not copy.exists():
        shutil.copytree(root, copy)
    target = copy / name
    original = (root / name).read_bytes()
    target.write_bytes(content)
    try:
        argv = base_argv(command, copy, scratch)
        if command == "params":
            argv[1] = str(copy / "plain")
            argv = argv[:2]
        code, err = run(argv, copy, scratch, capsys)
    finally:
        target.write_bytes(original)
    if code == 2:
        named = (target.name, target.parent.name) + (("corpus",) if command == "pretrain" else ())
        assert any(part in err[0] for part in named), (slot, content[:40], err)
