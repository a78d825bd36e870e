"""scripts/lineage_table.py without training: word2vec's and ELMo's pieces and their budget, the rows shared with
the recipes' comparison, the table, the reading of the notes' claims, the docs block and the figure."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("lineage_table", ROOT / "scripts" / "lineage_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def fake_bk(calls, summary=None, metrics=None):
    def run(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if metrics is not None and "--steps" in args:
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
        (out / "summary.json").write_text(json.dumps(summary or {}))

    return run


def test_word2vec_trains_each_unit_once_and_feeds_the_baseline(script, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(script.recipes, "bk", fake_bk(calls))
    s = script.recipes.Settings(script.TRANSFORMERS, 7.5, tmp_path, tasks=dict(script.TASKS))
    for name, task in s.tasks.items():
        script.word2vec(s, name, task)
    trained = [c for c in calls if c[:2] == ("word2vec", "train")]
    assert [c[c.index("--unit") + 1] for c in trained] == ["word", "char"]  # sentiment's words, NER's characters
    assert all(c[c.index("--threads") + 1] == "1" for c in trained)  # the same bits every run
    features = [c for c in calls if c[0] == "baseline"]
    assert [Path(c[c.index("--word2vec") + 1]).parent.name for c in features] == ["vectors-word"] * 2 + ["vectors-char"]
    assert features[1][features[1].index("--max-train-examples") + 1] == "500"


def test_elmo_is_timed_then_given_the_minutes_and_fine_tuned_with_three_seeds(script, tmp_path, monkeypatch):
    calls = []
    rows = [{"step": 10 * i, "seconds_per_step": 9.0 if i == 1 else 0.3} for i in range(1, 5)]
    summary = {"held_out": {"perplexity": 42.0}, "lr": 0.01}
    monkeypatch.setattr(script.recipes, "bk", fake_bk(calls, summary, rows))
    s = script.recipes.Settings(script.TRANSFORMERS, 3.0, tmp_path, tasks=dict(script.TASKS))
    elmo = script.elmo_pretrain(s)
    assert elmo["steps"] == 600 and elmo["perplexity"] == 42.0  # 3 minutes at 0.3 s (the first row left out)
    run = calls[1]
    assert run[run.index("--steps") + 1] == "600" and "--resume" in run
    calls.clear()
    script.elmo_finetune(s, elmo["model"], "ner", s.tasks["ner"])
    assert [c[c.index("--seed") + 1] for c in calls] == ["0", "1", "2"]
    lrs = [c[c.index("--lr") + 1 : c.index("--out")] for c in calls]
    assert lrs == [("1e-3", "1e-2"), ("0.01",), ("0.01",)]  # seed 0 chooses on dev, seeds 1 and 2 reuse it
    first = calls[0]
    assert first[first.index("--task") + 1] == "peoples-daily-ner" and first[first.index("--epochs") + 1] == "6"
    assert first[first.index("--max-eval-examples") + 1] == "600" and first[first.index("--max-chars") + 1] == "126"
    assert "--crf" not in first and "--stride" not in first  # the Transformers' tagging flags are not ELMo's


def test_the_transformer_rows_are_rows_of_the_recipes_comparison(script):
    script.recipes.check_rows(script.TRANSFORMERS)
    assert script.recipes.ROWS["gpt"] == ["--recipe", "gpt"] and script.recipes.ROWS["xlnet"] == ["--recipe", "xlnet"]


def fake_results(script) -> dict:
    def task(scores, vs_bert=(-0.02, -0.04, 0.0)):
        r = {"scores": scores, "vs_baseline": {"difference": -0.05, "low": -0.08, "high": -0.02}}
        return r | {"vs_bert": dict(zip(("difference", "low", "high"), vs_bert, strict=True))}

    def row(score, vs_bert=(-0.02, -0.04, 0.0)):
        return {name: task([score] * 3, vs_bert) for name in script.TASKS}

    pre = {"steps": 9000, "tokens_per_s": 1.0, "cloze_accuracy": None, "unigram_accuracy": None, "model": "m"}
    bert = {
        name: {"scores": [0.8] * 3, "vs_baseline": {"difference": -0.05, "low": -0.08, "high": -0.02}}
        for name in script.TASKS
    }
    baseline = {
        name: {"scores": [0.87], "vs_bert": {"difference": 0.07, "low": 0.05, "high": 0.09}} for name in script.TASKS
    }
    return {
        "word2vec": {"tasks": row(0.7, (-0.1, -0.12, -0.08))},
        "elmo": {"pretrain": {"steps": 1300, "perplexity": 99.4, "model": "e"}, "tasks": row(0.75)},
        "gpt": {"pretrain": pre | {"steps": 8000}, "tasks": row(0.78)},
        "xlnet": {"pretrain": pre, "tasks": row(0.79)},
        "bert": {"pretrain": pre, "tasks": bert},
        "random-init": {"tasks": row(0.72)},
        script.recipes.BASELINE: {"tasks": baseline},
    }


def test_the_table_and_the_reading_of_the_notes_claims(script):
    results = fake_results(script)
    header, rows = script.table(results, script.TASKS)
    assert header[:3] == ["row", "reads", "pretraining"] and header[-1] == "below the baseline on"
    w2v, elmo, gpt = rows[:3]
    assert w2v[1] == "one vector per word, no context" and w2v[3] == "70.0% (−10.0 [−12.0, −8.0])"
    assert elmo[2] == "1,300 steps (perplexity 99 per character)" and gpt[2] == "8,000 steps"
    assert rows[4][3] == "80.0%" and rows[-1][-1] == "—"
    lines = script.reading(results, script.TASKS)
    assert lines[0].startswith("- sentiment, 13,891 labels (BERT 80.0%). Context beats static vectors? yes: elmo")
    assert "Both directions beat one? yes: gpt 78.0% (−2.0 [−4.0, +0.0])" in lines[0]


def test_the_docs_block_and_the_figure(script, tmp_path):
    results = fake_results(script)
    page = tmp_path / "results.md"
    block = f"<!-- table {script.DOCS_TABLE}: written by `x`; do not edit by hand -->\nnot yet measured\n"
    page.write_text(f"# R\n\n{block}<!-- end table {script.DOCS_TABLE} -->\n", encoding="utf-8")
    header, rows = script.table(results, script.TASKS)
    s = script.recipes.Settings(script.TRANSFORMERS, 7.5, tmp_path, tasks=dict(script.TASKS))
    script.doc_tables.write_table(page, script.DOCS_TABLE, header, rows, "python l.py", script.note(s, results))
    text = page.read_text(encoding="utf-8")
    assert "| elmo | left and right, separately" in text and "7.5 minutes of pretraining per row" in text
    script.recipes.plot(results, script.TASKS, tmp_path / "lineage.png")
    assert (tmp_path / "lineage.png").read_bytes()[:4] == b"\x89PNG"


def test_the_docs_page_has_the_block(script):
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- table {script.DOCS_TABLE}:" in text and f"<!-- end table {script.DOCS_TABLE} -->" in text
