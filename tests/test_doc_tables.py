"""benchmarks/doc_tables.py: tables of figures written into the docs by the scripts that measure them. A block is
replaced and nothing else; a page without the block is refused; every block in the docs names a script that
writes it; and the scripts' wiring runs end to end at their smallest options on a copy of the page."""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import doc_tables  # noqa: E402
from doc_tables import DocTableError, read_tables, write_table  # noqa: E402

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PAGE = """# A page

Before: 字 and a trailing space \r
<!-- table speed: written by `python benchmarks/bench_x.py`; do not edit by hand -->
old caption

| a |
| --- |
| 1 |

<!-- end table speed -->
Between.
<!-- table other: written by `bash scripts/y.sh`; do not edit by hand -->
untouched
<!-- end table other -->
After.
"""


def page_with_blocks(tmp_path: Path) -> Path:
    page = tmp_path / "page.md"
    page.write_bytes(PAGE.encode("utf-8"))
    return page


def test_write_table_replaces_only_its_block(tmp_path):
    page = page_with_blocks(tmp_path)
    write_table(page, "speed", ["x", "ratio"], [["fp32", "2.41×"]], "python benchmarks/bench_x.py --steps 2", "A note.")
    text = page.read_bytes().decode("utf-8")
    begin = "<!-- table speed: written by `python benchmarks/bench_x.py --steps 2`; do not edit by hand -->\n"
    before, _, rest = PAGE.partition("<!-- table speed:")
    after = PAGE[PAGE.index("<!-- end table speed -->") :]
    assert text.startswith(before + begin) and text.endswith(after)  # byte for byte outside the block, \r kept
    body = text[len(before + begin) : -len(after)]
    lines = body.splitlines()
    assert lines[0].startswith("Measured on ") and "torch " in lines[0]
    assert lines[0].endswith("by `python benchmarks/bench_x.py --steps 2`.")
    assert lines[2:5] == ["| x | ratio |", "| --- | --- |", "| fp32 | 2.41× |"] and lines[6] == "A note."
    assert [t.name for t in read_tables(page)] == ["speed", "other"]
    assert read_tables(page)[1].body == "untouched\n" and read_tables(page)[0].body == body


def test_write_table_is_idempotent(tmp_path):
    page = page_with_blocks(tmp_path)
    args = (page, "other", ["a"], [["1"]], "bash scripts/y.sh")
    write_table(*args)
    once = page.read_bytes()
    write_table(*args)
    assert page.read_bytes() == once
    assert not [p for p in tmp_path.iterdir() if p.name != "page.md"]  # no temporary file left behind


def test_a_page_without_the_block_is_refused_in_one_line(tmp_path):
    page = page_with_blocks(tmp_path)
    with pytest.raises(DocTableError) as e:
        write_table(page, "missing", ["a"], [["1"]], "python benchmarks/bench_x.py")
    message = str(e.value)
    assert "\n" not in message and str(page) in message
    assert "<!-- table missing: written by `python benchmarks/bench_x.py`; do not edit by hand -->" in message
    assert "<!-- end table missing -->" in message
    assert page.read_bytes() == PAGE.encode("utf-8")


def test_an_unclosed_block_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table t: written by `bash scripts/y.sh`; do not edit by hand -->\n| a |\n")
    with pytest.raises(DocTableError, match="no closing line <!-- end table t -->"):
        read_tables(page)


def test_the_cpu_kind_names_its_native_bf16():
    kind = doc_tables.cpu_kind()
    assert any(word in kind for word in ("avx512_bf16", "amx_bf16", "AVX2 only", "no AVX2", "flags unknown"))


def test_the_command_names_how_it_measured_not_where_it_wrote():
    argv = ["--steps", "2", "--docs-dir", "/tmp/x", "--write-docs", "--docs-dir=/tmp/y", "--seq", "a b"]
    command = doc_tables.command_line(str(ROOT / "benchmarks" / "bench_x.py"), argv)
    assert command == "python benchmarks/bench_x.py --steps 2 --write-docs --seq 'a b'"


def test_bench_embed_lays_out_every_path_and_the_targets_per_segment():
    from bench_embed import LONG, Contender, speed_table, targets, targets_table

    found = [
        Contender("bertkit torch fp32", None, True),
        Contender("bertkit torch bf16", None, True),
        Contender("onnxruntime fp32", None, False),
        Contender("openvino bf16", None, False),
        Contender("ctranslate2 int8", None, False),
        Contender("openvino int8", None, False),
    ]

    def result(fp32, bf16, ort, ov, ct2, ov8=10):
        speeds = dict(zip([c.name for c in found], [fp32, bf16, ort, ov, ct2, ov8], strict=True))
        cosine = {"bertkit torch bf16": 0.9995, "openvino bf16": 0.99995, "ctranslate2 int8": 0.98}
        return {
            k: {"texts_per_s": v, "cosine": cosine.get(k, 1.0) - (k == "openvino int8") * 0.005}
            for k, v in speeds.items()
        }

    segments = {
        "the mix": (["a b", "c"], result(100, 300, 120, 200, 400, 250)),
        LONG[0]: (["d"], result(50, 90, 40, 80, 9)),
    }
    goals = targets(found, segments["the mix"][1])
    # ctranslate2 int8 is fastest but off the approximate class (cosine 0.98): it takes no part
    assert goals["fastest"] == ("bertkit torch bf16", "openvino int8", 1.2)
    assert goals["fastest, others without NNCF"] == ("bertkit torch bf16", "openvino bf16", 1.5)
    assert goals["fastest exact"] == ("bertkit torch fp32", "openvino bf16", 0.5)  # 0.99995 counts as exact
    assert goals["torch fp32 vs onnxruntime fp32"][2] == 100 / 120

    class Tokens:
        def tokenize(self, texts):
            return [t.split() for t in texts]

    header, rows, note = speed_table(found, segments, Tokens(), 3, ["ctranslate2 bf16: not supported"])
    assert header == ["path", "the mix (mean 2)", "documents, cut at 256 (mean 1)", "worst cosine to fp32"]
    assert rows[0] == ["**bertkit torch fp32**", "100", "50", "1.00000 (exact)"]
    assert rows[-2] == ["ctranslate2 int8", "400", "9", "0.98000 (off)"]
    assert "medians of 3 rounds" in note and "ctranslate2 bf16: not supported" in note
    header, rows = targets_table(found, segments)
    assert header[0] == "segment" and len(header) == 5
    assert rows[0][1] == "1.20× ✓ (torch bf16 / openvino int8)" and rows[0][2] == "1.50× ✓ (torch bf16 / openvino bf16)"
    assert rows[0][3].startswith("0.50× ✗")
    assert rows[1][0] == "documents, cut at 256"


def generated_blocks() -> list[tuple[str, str, str]]:
    return [(f"{page.relative_to(ROOT)}:{t.name}", t.name, t.command) for page in PAGES for t in read_tables(page)]


def test_the_docs_have_generated_tables():
    names = {name for _, name, _ in generated_blocks()}
    assert {"pretraining-speed", "embedding-speed", "fine-tuning-speed", "fine-tuning-demo"} <= names


@pytest.mark.parametrize(("where", "name", "command"), generated_blocks(), ids=[b[0] for b in generated_blocks()])
def test_each_block_names_a_script_that_writes_it(where, name, command):
    scripts = [w for w in shlex.split(command) if w.endswith((".py", ".sh"))]
    assert scripts, f"{where}: the command `{command}` names no script"
    for script in scripts:
        path = ROOT / script
        assert path.is_file(), f"{where}: `{command}` names {script}, which is not in the repository"
        source = path.read_text(encoding="utf-8")
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source), f"{where}: {script} never writes {name}"


def test_every_table_a_benchmark_writes_has_its_block():
    have = {t.name for t in read_tables(ROOT / "docs" / "performance.md")}
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        module = ast.parse(script.read_text(encoding="utf-8"))
        for node in module.body:  # TABLE = "name" or TABLES = [names], at the top level
            if not (
                isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] in (["TABLE"], ["TABLES"])
            ):
                continue
            value = ast.literal_eval(node.value)
            for name in [value] if isinstance(value, str) else value:
                assert name in have, f"{script.name} writes table {name}; docs/performance.md has no block for it"


def copy_of_docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in ("performance.md", "results.md"):
        (docs / page).write_bytes((ROOT / "docs" / page).read_bytes())
    return docs


def outside(text: str, name: str) -> str:
    """The page with the block `name` cut out: what must not change."""
    start = text.index(f"<!-- table {name}:")
    return text[:start] + text[text.index(f"<!-- end table {name} -->") :]


def test_bench_finetune_writes_its_table_into_a_copy_of_the_page(tmp_path):
    docs = copy_of_docs(tmp_path)
    args = ["--layers", "1", "--hidden", "64", "--vocab", "300", "--batch", "2", "--seq", "8", "--steps", "1"]
    args += ["--precision", "fp32", "--write-docs", "--docs-dir", str(docs)]
    script = ROOT / "benchmarks" / "bench_finetune.py"
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fp32 2 x 8: bertkit" in result.stdout  # the printed report is as before
    before = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    after = (docs / "performance.md").read_text(encoding="utf-8")
    assert outside(after, "fine-tuning-speed") == outside(before, "fine-tuning-speed")
    block = next(t for t in read_tables(docs / "performance.md") if t.name == "fine-tuning-speed")
    assert (
        block.command.startswith("python benchmarks/bench_finetune.py --layers 1") and "--docs-dir" not in block.command
    )
    assert block.body.startswith("Measured on ") and "| fp32, 2 × 8 |" in block.body


def test_a_benchmark_without_its_block_stops_before_measuring(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "performance.md").write_text("# Performance\n")
    script = ROOT / "benchmarks" / "bench_pretrain.py"
    result = subprocess.run(
        [sys.executable, str(script), "--write-docs", "--docs-dir", str(docs)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "torch" not in result.stdout  # nothing measured
    assert result.stderr.count("\n") == 1 and "<!-- table pretraining-speed: written by" in result.stderr


def embedded_python(script: Path) -> str:
    """The Python that scripts/finetune_table.sh runs from a here-document to print (and write) its table."""
    return script.read_text(encoding="utf-8").split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]


def test_finetune_table_writes_a_models_table(tmp_path):
    docs, runs = copy_of_docs(tmp_path), tmp_path / "runs"
    for name, metric in (("sentiment-all", "accuracy"), ("sentiment-500", "accuracy"), ("ner", "f1"), ("cws", "f1")):
        for run, summary in (
            ("baseline", {"test": {metric: 0.87}}),
            ("pretrained", {"test": {"mean": 0.86, "max": 0.869, "values": [0.856, 0.854, 0.869]}}),
        ):  # SKIP_RANDOM: no random-init runs
            (runs / f"{name}-{run}").mkdir(parents=True)
            (runs / f"{name}-{run}" / "summary.json").write_text(json.dumps(summary))
    env = os.environ | {"WRITE_DOCS": "1", "SKIP_RANDOM": "1", "DOCS_DIR": str(docs)}
    env["TABLE"] = "fine-tuning-one-hour-wwm"
    code = embedded_python(ROOT / "scripts" / "finetune_table.sh")
    command = [sys.executable, "-", str(runs), "runs/pretrain-zh-wwm/model", "0 1 2"]
    result = subprocess.run(command, input=code, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"sentiment, 13,891 labels +87\.0% +— +86\.0%", result.stdout)  # printed as before
    block = next(t for t in read_tables(docs / "results.md") if t.name == "fine-tuning-one-hour-wwm")
    assert block.command.startswith("WRITE_DOCS=1 SKIP_RANDOM=1 DOCS_DIR=")
    assert block.command.endswith("bash scripts/finetune_table.sh runs/pretrain-zh-wwm/model " + f"{runs} '0 1 2'")
    assert "| task (test split) | metric | baseline | pretrained |" in block.body
    assert (
        "| accuracy | 87.0% | 86.0% (85.6, 85.4, 86.9) |" in block.body and "| entity F1 | 87.0 | 86.0 (" in block.body
    )
    before = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    after = (docs / "results.md").read_text(encoding="utf-8")
    assert outside(after, "fine-tuning-one-hour-wwm") == outside(before, "fine-tuning-one-hour-wwm")
