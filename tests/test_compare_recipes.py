"""scripts/compare_recipes.py without training: the rows check, the timing arithmetic, resume skipping, the
parsing of `bertkit compare`, the table, the docs block and the figure, from fake runs and summaries."""

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
    spec = importlib.util.spec_from_file_location("compare_recipes", ROOT / "scripts" / "compare_recipes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# `bertkit compare` output as it prints it: 3 runs of A, then their mean
COMPARE_OUT = """B: runs/recipes/bert/ner/seed-1/test_predictions.jsonl (600 test examples; entity F1)
run of A                                           A       B   A - B      95% interval  McNemar p
seed-0/lr-0.001/test_predictions.jsonl        55.10%  54.00%  +1.10% [-1.50%, +3.70%]          —
seed-1/test_predictions.jsonl                 53.00%  54.00%  -1.00% [-3.60%, +1.55%]          —
seed-2/test_predictions.jsonl                 56.20%  54.00%  +2.20% [-0.40%, +4.90%]          —
mean of the 3 runs above                      54.77%  54.00%  +0.77% [-1.20%, +2.81%]          —
an interval that holds 0 (or p > 0.05) means this test set cannot tell the two apart
"""


def test_the_mean_line_of_compare_is_the_interval(script):
    i = script.parse_compare(COMPARE_OUT)
    assert (i.difference, i.low, i.high) == pytest.approx((0.0077, -0.012, 0.0281))
    assert i.holds_zero() and i.negated() == script.Interval(-i.difference, -i.high, -i.low)
    one = "run of A  A  B\nruns/x/sentiment  61.69%  78.23% -16.53% [-19.12%, -13.88%]     <0.001\n"
    assert script.parse_compare(one) == script.Interval(-0.1653, -0.1912, -0.1388)
    with pytest.raises(BertkitError, match="no result line"):
        script.parse_compare("error: b: runs/x does not exist\n")


def test_against_bert_seeds_the_mean_difference_in_the_widest_interval(script):
    i = script.Interval
    got = script.widest([i(0.01, -0.01, 0.03), i(0.02, 0.0, 0.04), i(0.0, -0.02, 0.02)])
    assert (got.difference, got.low, got.high) == pytest.approx((0.01, -0.02, 0.04))


def test_a_row_missing_from_recipes_stops_before_anything_runs(script, monkeypatch):
    script.check_rows(["bert", "roberta"])
    monkeypatch.setitem(script.ROWS, "ernie-9", ["--recipe", "ernie-9"])
    with pytest.raises(BertkitError, match="row 'ernie-9': recipe 'ernie-9' is not in RECIPES"):
        script.check_rows(["bert", "ernie-9"])
    with pytest.raises(BertkitError, match="not a row of ROWS"):
        script.check_rows(["bert", "gpt-9"])
    with pytest.raises(BertkitError, match="include it"):
        script.check_rows(["roberta"])
    assert all(flags[flags.index("--recipe") + 1] for flags in script.ROWS.values())


def test_rows_that_mask_entities_get_the_entity_file(script):
    assert script.masks_entities(script.ROWS["ernie"]) and script.masks_entities(["--recipe", "ernie-2.0"])
    assert not script.masks_entities(script.ROWS["bert-wwm"]) and not script.masks_entities(script.ROWS["electra"])
    assert script.masks_entities(["--recipe", "bert", "--masking", "ernie-entity"])
    assert not script.masks_entities(["--recipe", "ernie", "--masking", "wwm"])  # --masking replaces the stages


def test_the_budget_is_steps_that_fit_the_minutes(script):
    rows = [{"step": 2 * k, "seconds_per_step": 9.0 if k in (1, 6) else 0.04, "max_seq_length": 32} for k in (1, 2, 3)]
    rows += [{"step": 2 * k, "seconds_per_step": 9.0 if k == 4 else 0.06, "max_seq_length": 64} for k in (4, 5, 6)]
    rows.append({"eval": {"step": 12}})
    step_s = script.seconds_per_step(rows)  # the first row of each length (start-up) left out
    assert step_s == pytest.approx(0.9 * 0.04 + 0.1 * 0.06)
    assert script.steps_for(0.5, 4.5, 200) == 540 and script.steps_for(1.0, 0.0, 20) == 20
    with pytest.raises(BertkitError, match="64 tokens"):
        script.seconds_per_step(rows[:3])


def test_finished_pieces_are_skipped_and_seeds_reuse_seed_0s_rate(script, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(script, "bk", lambda *args: calls.append(args))
    s = script.Settings(["bert"], 1.0, tmp_path)
    folder = tmp_path / "bert" / "ner"
    for seed, summary in ((0, {"lr": 0.003, "metric": "f1", "test": {"mean": 0.5}}), (1, {"test": {}})):
        (folder / f"seed-{seed}").mkdir(parents=True)
        (folder / f"seed-{seed}" / "summary.json").write_text(json.dumps(summary))
    script.finetune(s, folder, "m", script.TASKS["ner"])
    assert len(calls) == 1  # seed 2 only
    args = calls[0]
    assert args[args.index("--seeds") + 1] == "2" and args[args.index("--lr") + 1] == "0.003"
    assert args[-2:] == ("--out", str(folder / "seed-2")) and "--crf" in args and "--overwrite" in args
    assert json.loads((tmp_path / "timings.jsonl").read_text())["piece"] == str(folder / "seed-2")
    calls.clear()
    (folder / "seed-2").mkdir()
    (folder / "seed-2" / "summary.json").write_text("{}")
    script.finetune(s, folder, "m", script.TASKS["ner"])
    assert calls == []
    assert not script.run_piece(folder / "seed-0", ["finetune"], tmp_path / "log")


def test_seed_0_searches_the_grid_and_smoke_cuts_the_data(script, tmp_path, monkeypatch):
    calls = []

    def fake(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"lr": 0.001}))

    monkeypatch.setattr(script, "bk", fake)
    script.finetune(script.Settings(["bert"], 1.0, tmp_path), tmp_path / "a", "m", script.TASKS["sentiment-500"])
    first = calls[0]
    assert first[first.index("--lr") + 1 : first.index("--out")] == ("3e-4", "1e-3")  # chosen on dev
    assert "--random-init" not in first and [c[c.index("--lr") + 1] for c in calls[1:]] == ["0.001", "0.001"]
    smoke = script.smoke_settings(tmp_path / "b")
    calls.clear()
    script.finetune(smoke, tmp_path / "b", "m", smoke.tasks["sentiment-500"], random_init=True)
    first = calls[0]
    assert "--random-init" in first
    assert first[first.index("--max-train-examples") + 1] == "64" and first[first.index("--epochs") + 1] == "1"
    assert first.count("--max-train-examples") == 1


def fake_results(script) -> dict:
    def task(scores, vs_bert=None, vs_baseline=(-0.05, -0.08, -0.02)):
        r = {"scores": scores, "vs_baseline": dict(zip(("difference", "low", "high"), vs_baseline, strict=True))}
        if vs_bert:
            r["vs_bert"] = dict(zip(("difference", "low", "high"), vs_bert, strict=True))
        return r

    pre = {"steps": 6000, "tokens_per_s": 38123.4, "cloze_accuracy": 0.262, "unigram_accuracy": 0.047}
    tasks = {name: task([0.8, 0.82, 0.81]) for name in script.TASKS}
    electra = {name: task([0.7, 0.7, 0.7], (-0.11, -0.13, -0.09)) for name in script.TASKS}
    electra["cws"] = task([0.9, 0.9, 0.9], (0.004, -0.002, 0.01), (0.01, 0.0, 0.02))
    baseline = {name: {"scores": [0.87], "vs_bert": {"difference": 0.06, "low": 0.04, "high": 0.08}} for name in tasks}
    return {
        "bert": {"pretrain": pre | {"model": "m", "generator": False}, "tasks": tasks},
        "electra": {"pretrain": pre | {"steps": 4000, "model": "e", "generator": True}, "tasks": electra},
        "random-init": {"tasks": {name: task([0.75] * 3, (-0.06, -0.08, -0.04)) for name in script.TASKS}},
        script.BASELINE: {"tasks": baseline},
    }


def test_the_table_from_summaries(script):
    header, rows = script.table(fake_results(script), script.TASKS)
    assert header[-1] == "below the baseline on" and header[4] == "sentiment, 13,891 labels"
    bert, electra, random_init, baseline = rows
    assert bert[:5] == ["bert", "6,000", "38,123", "26.2% (4.7%)", "81.0%"] and bert[-1] == "all"
    assert electra[3] == "generator's 26.2% (4.7%)" and electra[4] == "70.0% (−11.0 [−13.0, −9.0])"
    assert electra[7] == "90.0 (+0.4 [−0.2, +1.0])"  # F1 in points
    assert electra[-1] == "sentiment, 13,891 labels; sentiment, 500 labels; NER, entity F1"
    assert random_init[1:4] == ["—", "—", "—"] and baseline[4] == "87.0% (+6.0 [+4.0, +8.0])" and baseline[-1] == "—"


def test_the_docs_block_and_the_figure(script, tmp_path):
    results = fake_results(script)
    page = tmp_path / "results.md"
    block = f"<!-- table {script.DOCS_TABLE}: written by `x`; do not edit by hand -->\nnot yet measured\n"
    page.write_text(f"# R\n\n{block}<!-- end table {script.DOCS_TABLE} -->\nafter\n", encoding="utf-8")
    header, rows = script.table(results, script.TASKS)
    s = script.Settings(["bert", "electra"], 4.5, tmp_path)
    script.doc_tables.write_table(page, script.DOCS_TABLE, header, rows, "python c.py", script.note(s, results))
    text = page.read_text(encoding="utf-8")
    assert "| electra | 4,000 |" in text and "not yet measured" not in text and text.endswith("after\n")
    assert "the 25% target reached" in text and "`--recipe electra`" in text
    assert "- NER, entity F1: BERT itself is best (81.0) (random init −6.0 against BERT [−8.0, −4.0]); below" in text
    assert "below the classical baseline: every row." in text
    assert "- segmentation, word F1: electra is best, 90.0, +0.4 over BERT [−0.2, +1.0]: inside the noise (" in text
    assert text.count("below the classical baseline: bert, random-init.") == 1
    script.plot(results, script.TASKS, tmp_path / "recipes.png")
    assert (tmp_path / "recipes.png").read_bytes()[:4] == b"\x89PNG"


def test_the_docs_page_has_the_block():
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert "<!-- table recipes: written by `" in text and "<!-- end table recipes -->" in text
