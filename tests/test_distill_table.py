"""scripts/distill_table.py without training: the student sizes, the commands of the pieces, resume skipping,
the figures read from logs and `bertkit embed`, the table, the papers' ratios, the verdict, the docs block and
the figure, from fake runs and summaries."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bertkit.errors import BertkitError

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("distill_table", ROOT / "scripts" / "distill_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


MINI = {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4}


def test_student_sizes_follow_the_teacher(script):
    sizes = script.student_sizes(MINI)
    assert sizes["distilbert"] == ["distill", "--method", "distilbert"]  # half the layers: distill's default
    assert sizes["tinybert"][-4:] == ["--student-layers", "4", "--student-hidden", "128"]
    assert sizes["distilbert-size"] == ["pretrain", "--num-hidden-layers", "2", "--hidden-size", "256"]
    assert sizes["tinybert-size"][-4:] == ["--num-hidden-layers", "4", "--hidden-size", "128"]
    base = script.student_sizes({"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12})
    assert base["distilbert-size"][2] == "6" and base["tinybert"][-1] == "384"  # a multiple of the 12 heads
    assert script.student_sizes({"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2})["tinybert"][
        -3:
    ] == ["2", "--student-hidden", "64"]


def test_every_student_row_is_compared_with_a_row_of_its_size(script):
    for row in script.ROWS.values():
        if row.undistilled is not None:
            assert script.ROWS[row.undistilled].model == f"{row.model}-size" and row.model in script.PAPERS
    assert set(script.student_sizes(MINI)) == {r.model for r in script.ROWS.values()} - {"teacher"}


def test_the_pieces_are_timed_then_run_for_the_budget(script, tmp_path, monkeypatch):
    calls = []

    def fake(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        rows = [{"step": 2 * k, "seconds_per_step": 0.5, "max_seq_length": 128} for k in range(1, 4)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "summary.json").write_text(json.dumps({"steps": 1}))

    monkeypatch.setattr(script.recipes, "bk", fake)
    s = script.Settings(Path("t"), 1.0, tmp_path)
    model = script.make_student(s, "tinybert", script.student_sizes(MINI)["tinybert"], Path("t"))
    assert model == tmp_path / "tinybert" / "general" / "model"
    timing, run = calls
    assert timing[timing.index("--steps") + 1] == "40" and run[run.index("--steps") + 1] == "200"  # min_steps
    assert "--teacher" in run and "--resume" in run and run[run.index("--max-seq-length") + 1] == "128"
    calls.clear()
    s.min_steps = 10
    script.make_student(s, "plain", script.student_sizes(MINI)["distilbert-size"], Path("t"))
    assert calls[1][calls[1].index("--steps") + 1] == "120"  # 60 s / 0.5 s
    assert calls[1][calls[1].index("--tokenizer") + 1] == "t" and "--dynamic" in calls[1]
    calls.clear()
    script.make_student(s, "plain", script.student_sizes(MINI)["distilbert-size"], Path("t"))
    assert calls == []  # both pieces done: skipped


def test_task_distillation_uses_the_teachers_model_and_the_students_rate(script, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(script.recipes, "bk", lambda *args: calls.append(args))
    for row, summary in (("teacher", {"runs": [{"model": "T/model"}]}), ("tinybert", {"lr": 0.003})):
        (tmp_path / row / "ner" / "seed-0").mkdir(parents=True)
        (tmp_path / row / "ner" / "seed-0" / "summary.json").write_text(json.dumps(summary))
    s = script.smoke_settings(Path("t"), tmp_path)
    script.distill_task(s, "tinybert+task", "ner", Path("S"), "tinybert")
    (args,) = calls
    assert args[:7] == ("distill", "--method", "tinybert", "--teacher", "T/model", "--student", "S")
    assert args[args.index("--lr") + 1] == "0.003" and "--crf" in args and "--dropout" not in args
    assert args[-4:] == ("--seed", "0", "--out", str(tmp_path / "tinybert+task" / "ner" / "seed-0"))
    assert args[args.index("--max-train-examples") + 1] == "64"


def test_figures_from_logs_and_embed(script, tmp_path):
    rows = [{"step": 10, "sequences_per_s": 8.0}, {"eval": {}}, {"step": 20, "sequences_per_s": 64.0}]
    rows.append({"step": 30, "sequences_per_s": 32.0})
    assert script.step_seconds(rows, 32) == pytest.approx(0.75)  # median of 0.5 and 1.0; the first row left out
    assert script.step_seconds(rows[:2], 32) is None
    for seed, rate in ((1, 64.0), (2, 16.0)):
        run = tmp_path / f"seed-{seed}"
        run.mkdir()
        (run / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps({"sequences_per_s": rate}) + "\n")
    (tmp_path / "seed-1" / "intermediate").mkdir()
    (tmp_path / "seed-1" / "intermediate" / "metrics.jsonl").write_text(
        (json.dumps({"sequences_per_s": 1.0}) + "\n") * 3
    )
    assert script.finetune_step_seconds(tmp_path) == pytest.approx((0.5 + 2.0) / 2)
    out = "model: x\nembedded 1000 texts in 2.5 s (400.0 texts/s) -> a.npy\n"
    assert script.embed_rate(out) == 400.0
    with pytest.raises(BertkitError, match="no 'embedded N texts' line"):
        script.embed_rate("error: x\n")


def fake_results(script) -> dict:
    def task(scores, vs_teacher=None, vs_undistilled=None):
        r = {"scores": scores}
        for key, i in (("vs_teacher", vs_teacher), ("vs_undistilled", vs_undistilled)):
            if i:
                r[key] = dict(zip(("difference", "low", "high"), i, strict=True))
        return r

    def row(n, speed, step, scores, vs_teacher=None, vs_undistilled=None):
        tasks = {name: task(scores, vs_teacher, vs_undistilled) for name in script.TASKS}
        return {"parameters": n, "texts_per_s": speed, "step_seconds": step, "tasks": tasks}

    return {
        "teacher": row(4_000_000, 500.0, 0.2, [0.8, 0.8, 0.8]),
        "distilbert": row(2_400_000, 900.0, 0.1, [0.78] * 3, (-0.02, -0.03, -0.01), (0.03, 0.01, 0.05)),
        "distilbert+task": row(2_400_000, 900.0, 0.15, [0.76] * 3, (-0.04, -0.05, -0.03), (0.01, -0.01, 0.03)),
        "distilbert-size": row(2_400_000, 900.0, 0.1, [0.75] * 3, (-0.05, -0.06, -0.04)),
        "tinybert": row(1_000_000, 2000.0, None, [0.7] * 3, (-0.1, -0.12, -0.08), (-0.02, -0.04, -0.01)),
    }


def test_the_table_from_summaries(script):
    header, rows = script.table(fake_results(script), script.TASKS)
    assert header[:4] == script.HEADER and header[4] == "sentiment, 13,891 labels" and len(header) == 7
    teacher, distilbert, _, plain, tiny = rows
    assert teacher == ["teacher", "4,000,000 (100%)", "500 (1.00×)", "0.200 (1.00×)", "80.0%", "80.0%", "80.0"]
    assert distilbert[1:4] == ["2,400,000 (60%)", "900 (1.80×)", "0.100 (0.50×)"]
    assert distilbert[4] == "78.0% (−2.0 [−3.0, −1.0]; +3.0 [+1.0, +5.0])"
    assert distilbert[6] == "78.0 (−2.0 [−3.0, −1.0]; +3.0 [+1.0, +5.0])"  # F1 in points
    assert plain[4] == "75.0% (−5.0 [−6.0, −4.0])" and tiny[3] == "—"


def test_the_papers_ratios_and_where_distillation_did_not_pay(script):
    results = fake_results(script)
    papers = script.papers_table(results, script.TASKS)
    assert "| DistilBERT paper: 6 of BERT-base's 12 layers, GLUE | 60% | 1.6× (inference) | 97.0% |" in papers
    assert "| TinyBERT-4 paper: 4 × 312 from BERT-base, GLUE | 13% | 9.4× (inference) | 96.8% |" in papers
    assert "| ours: DistilBERT student, fine-tuned | 60% | 1.80× (`bertkit embed`) | 97.5% (mean over 3 tasks) |" in (
        papers
    )
    results["teacher"]["tasks"]["ner"]["scores"] = [0.0]
    assert script.kept(results, "distilbert", script.TASKS) == "—"  # no share of nothing
    lines = script.verdict(results, script.TASKS)
    assert lines[0] == (
        "- DistilBERT student, fine-tuned, sentiment, 13,891 labels: +3.0 [+1.0, +5.0] against DistilBERT's size, "
        "no distillation: paid; −2.0 against the teacher."
    )
    assert "did not pay: a tie" in lines[3] and "did not pay: worse" in lines[6]
    assert lines[-1].startswith("Distillation did not pay: DistilBERT student, task-distilled on sentiment, 13,891")
    assert lines[-1].count(";") == 5  # 3 tasks of each of the two rows that did not pay


def test_the_docs_block_and_the_figure(script, tmp_path):
    results = fake_results(script)
    page = tmp_path / "distillation.md"
    block = f"<!-- table {script.DOCS_TABLE}: written by `x`; do not edit by hand -->\nNot yet measured.\n"
    page.write_text(f"# D\n\n{block}<!-- end table {script.DOCS_TABLE} -->\nafter\n", encoding="utf-8")
    header, rows = script.table(results, script.TASKS)
    s = script.Settings(Path("runs/pretrain-zh/model"), 12.0, tmp_path)
    pieces = {"distilbert": {"command": ["distill", "--method", "distilbert"], "steps": 1300}}
    script.doc_tables.write_table(page, script.DOCS_TABLE, header, rows, "python d.py", script.note(s, results, pieces))
    text = page.read_text(encoding="utf-8")
    assert "| DistilBERT student, fine-tuned | 2,400,000 (60%) |" in text and "Not yet measured" not in text
    assert "distilbert: `bertkit distill --method distilbert`, 1,300 steps" in text and text.endswith("after\n")
    script.plot(results, script.TASKS, tmp_path / "distill.png")
    assert (tmp_path / "distill.png").read_bytes()[:4] == b"\x89PNG"


def test_the_docs_page_has_the_block():
    text = (ROOT / "docs" / "distillation.md").read_text(encoding="utf-8")
    assert "<!-- table distillation: written by `" in text and "<!-- end table distillation -->" in text


def test_the_speed_run_is_a_fine_tuning_of_its_own_on_the_same_reviews(script, tmp_path, monkeypatch):
    calls = []

    def fake(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        rows = [{"step": 2, "sequences_per_s": 8.0}, {"step": 4, "sequences_per_s": 64.0}]
        rows.append({"step": 6, "sequences_per_s": 32.0})
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "summary.json").write_text("{}")

    monkeypatch.setattr(script.recipes, "bk", fake)
    s = script.Settings(Path("t"), 1.0, tmp_path)
    assert script.timed_finetune(s, "teacher", Path("m")) == pytest.approx(0.75)
    (args,) = calls
    assert args[args.index("--max-train-examples") + 1] == "1280" and args[args.index("--model") + 1] == "m"
    assert args[args.index("--out") + 1] == str(tmp_path / "speed" / "teacher") and "--log-every" in args
    assert script.timed_finetune(s, "teacher", Path("m")) == pytest.approx(0.75) and len(calls) == 1  # done: kept
