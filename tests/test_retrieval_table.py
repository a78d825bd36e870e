"""scripts/retrieval_table.py without training: the pieces' commands, the rate and the recipe chosen on dev, the
comparison read from `bertkit compare`, and the table and its verdict, from fake runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("retrieval_table", ROOT / "scripts" / "retrieval_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def fake_runs(script, monkeypatch, dev: dict):
    """bk() writes what each command would: summaries with dev scores from DEV[(row, lr)], evals with metrics."""
    calls = []

    def bk(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1] if "--out" in args else args[args.index("--output") + 1])
        if args[0] == "retrieval" and args[1] == "data":
            (out / "test").mkdir(parents=True)
            pairs = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(8)]
            (out / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
        elif args[0] == "mine-negatives":
            out.write_text("{}\n")
        elif args[0] == "embed-train":
            row, lr = out.parent.name, args[args.index("--lr") + 1]
            out.mkdir(parents=True)
            (out / "summary.json").write_text(json.dumps({"dev": {"ndcg_at_10": dev.get((row, lr), 0.1)}}))
        elif args[0] == "retrieval":
            out.mkdir(parents=True)
            metrics = dict.fromkeys(("recall@10", "mrr@10", "ndcg@10"), 0.5)
            timings = {"dense": {"queries_per_s": 100.0}} | (
                {"bm25": {"queries_per_s": 100.0}} if "--bm25" in args else {}
            )
            (out / "summary.json").write_text(json.dumps({"metrics": metrics, "timings": timings}))

    monkeypatch.setattr(script, "bk", bk)
    monkeypatch.setattr(script, "ensure_models", lambda s: None)
    monkeypatch.setattr(script, "compare", lambda a, b, cache: script.Interval(0.01, -0.02, 0.04))
    return calls


def test_rates_and_the_recipe_are_chosen_on_dev(script, tmp_path, monkeypatch):
    dev = {("demo-negatives", "1e-3"): 0.4, ("demo-supervised", "3e-4"): 0.3, ("one-hour-trained", "1e-3"): 0.5}
    calls = fake_runs(script, monkeypatch, dev)
    s = script.Settings(tmp_path, demo=Path("demo"), one_hour=Path("hour"))
    results = script.run_all(s)
    assert list(results) == list(script.ROWS)
    assert results["demo-negatives"]["lr"] == "1e-3" and results["demo-supervised"]["lr"] == "3e-4"
    assert results["one-hour-trained"]["negatives"] is True  # the demo model's dev chose hard negatives
    trains = [c for c in calls if c[0] == "embed-train" and "hour" in c]
    assert trains and all(c[c.index("--train") + 1].endswith("mined-one-hour.jsonl") for c in trains)
    seeds = [(c[c.index("--lr") + 1], c[c.index("--seed") + 1]) for c in trains]
    assert seeds == [("3e-4", "0"), ("1e-3", "0"), ("1e-3", "1"), ("1e-3", "2")]  # seed 0 twice, then the chosen
    evals = [c for c in calls if c[:2] == ("retrieval", "eval")]
    assert all(c[c.index("--data") + 1] == str(tmp_path / "data" / "test") for c in evals)
    hybrid = [c for c in evals if "hybrid" in c[c.index("--out") + 1]]
    assert len(hybrid) == 3 and all("--bm25" in c and "--model" in c for c in hybrid)
    simcse = [c for c in calls if c[0] == "embed-train" and "simcse" in c]
    assert all(c[c.index("--train") + 1].endswith("paragraphs.txt") for c in simcse)
    header, rows = script.table(results)
    assert rows[0][0] == "BM25, characters" and "[" not in rows[0][3] and rows[2][3] == "0.500 (+1.0 [−2.0, +4.0])"
    assert rows[-2][4] == "50"  # the hybrid runs both searches: 1 / (1/100 + 1/100)
    assert "No trained row beats BM25" in script.note(results)
    calls.clear()
    assert script.run_all(s) == results and not [c for c in calls if c[0] != "mine-negatives"]  # all done: skipped


def test_parse_compare_reads_the_means_row(script):
    text = (
        "B: x (305 queries; ndcg@10, the mean over queries)\nrun of A  A  B  A - B  95% interval\n"
        "seed-0   0.5000  0.4000 +0.1000 [+0.0500, +0.1500]\n"
        "mean of the 3 runs above   0.5200  0.4000 +0.1200 [-0.0100, +0.2000]\nan interval that holds 0 ...\n"
    )
    assert script.parse_compare(text) == script.Interval(0.12, -0.01, 0.2)
