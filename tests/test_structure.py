"""The house: the package's import arrows run one way, no module is too long to read, `import bertkit` is cheap.

Rooms import the core; `use/` may import `finetune/` (for task heads), `distill/` the pretraining and fine-tuning
machinery it reuses, and so does `lineage/` (word2vec, ELMo); `retrieval/` those and `use/` (the embedder, the
index); nothing imports `cli`; the core imports no room.
Imports inside functions count too: a lazy import is still an arrow.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bertkit

PACKAGE = Path(bertkit.__file__).parent
ROOMS = ("pretrain", "finetune", "distill", "use", "retrieval", "lineage", "cli")
# room -> the rooms it may import besides itself (everyone may import the core)
MAY_IMPORT = {
    "pretrain": set(),
    "finetune": set(),
    "distill": {"pretrain", "finetune"},
    "use": {"finetune"},
    "retrieval": {"pretrain", "finetune", "use"},
    "lineage": {"pretrain", "finetune"},
    "cli": {"pretrain", "finetune", "distill", "use", "retrieval", "lineage"},
}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """The bertkit modules a file imports, anywhere in it; `from a import b` counts as a.b when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bertkit"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "bertkit":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def test_graph_sees_the_rooms_and_their_arrows():
    # guards the test itself: a parser that found no arrows would pass every rule below
    assert {room(m) for m in MODULES} == {None, *ROOMS}
    assert "bertkit.pretrain.shards" in GRAPH["bertkit.pretrain.loop"]
    assert "bertkit.cli.table" in GRAPH["bertkit.cli.models"]


def test_no_import_circles():
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if n == "bertkit":
                continue  # importing the package itself is its own rule, below
            if state.get(n) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(n) :] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_arrows_run_one_way(name):
    mine = room(name)
    for target in GRAPH[name]:
        assert target != "bertkit" or name == "bertkit", f"{name} imports the package's lazy API; import the module"
        theirs = room(target)
        if theirs is None or theirs == mine:
            continue
        assert theirs != "cli", f"{name} imports {target}: nothing imports the CLI"
        if name == "bertkit":
            continue  # the lazy top-level API is a face, like the CLI: it names a room's entry points
        assert mine is not None, f"{name} is core and imports the room {theirs!r} ({target})"
        assert theirs in MAY_IMPORT[mine], f"{name} ({mine}/) may not import {target} ({theirs}/)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_readable_in_one_sitting(name):
    n = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{MODULES[name]} has {n} lines; split it along its seams"


def test_the_cli_imports_torch_only_when_a_command_needs_it():
    code = "import sys, bertkit.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_import_bertkit_loads_no_torch_and_the_api_resolves():
    code = (
        "import sys, bertkit; assert 'torch' not in sys.modules and 'tokenizers' not in sys.modules, 'eager'; "
        "print(bertkit.load.__name__, bertkit.Embedder.__name__, bertkit.Tokenizer.__name__, "
        "bertkit.BertConfig.__name__, bertkit.BertEncoder.__name__, bertkit.load_embedder.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["load_pretrained", "Embedder", "Tokenizer", "BertConfig", "BertEncoder", "load_embedder"]
    assert set(bertkit.__all__) == {*bertkit._API, "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bertkit.nope  # noqa: B018


# The family is data (config.py's rows, hf.py's name maps): code elsewhere asks the config what it has, never
# which family it is, so a new family is a new row and not a new branch in every module.
FAMILY_MODULES = {"bertkit.config", "bertkit.hf"}
# The loops read top to bottom: a function past this is the set-up, resume or evaluation wanting its own name.
LOOP_MODULES = {"bertkit.pretrain.loop", "bertkit.finetune.loop"}
MAX_LOOP_FUNCTION_LINES = 80


def mentions_model_type(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr == "model_type":
            return True
        if isinstance(n, ast.Name) and n.id == "model_type":
            return True
        if isinstance(n, ast.Constant) and n.value == "model_type":
            return True
    return False


def model_type_comparisons(path: Path) -> list[int]:
    """Lines that compare a model_type (==, !=, in, a match on it) with anything."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare) and any(mentions_model_type(x) for x in [node.left, *node.comparators]):
            found.append(node.lineno)
        elif isinstance(node, ast.Match) and mentions_model_type(node.subject):
            found.append(node.lineno)
    return found


def test_the_structure_checks_see_what_they_look_for():
    code = "if config.model_type == 'electra': pass\nx = c.get('model_type') in ('a',)\nok = config.model_type\n"
    probe = Path(__file__).parent / "_probe_structure.py"
    try:
        probe.write_text(code)
        assert model_type_comparisons(probe) == [1, 2]
    finally:
        probe.unlink()
    assert any(len(long_functions(MODULES[m], 20)) for m in LOOP_MODULES)


@pytest.mark.parametrize("name", sorted(set(MODULES) - FAMILY_MODULES))
def test_no_module_but_the_family_rows_asks_which_family_a_model_is(name):
    lines = model_type_comparisons(MODULES[name])
    assert not lines, f"{MODULES[name]} compares model_type at lines {lines}; ask the config's family row instead"


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit
    ]


@pytest.mark.parametrize("name", sorted(LOOP_MODULES))
def test_the_loops_read_in_one_sitting(name):
    long = long_functions(MODULES[name], MAX_LOOP_FUNCTION_LINES)
    assert not long, f"{MODULES[name]}: {', '.join(long)}; give the set-up, resume or evaluation its own function"
