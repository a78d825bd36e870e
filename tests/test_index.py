"""`bertkit index` / `search` and serve's /search: the flat index is brute force, HNSW measures its recall, an
index refuses another model's queries, and /search answers what `search` answers."""

from __future__ import annotations

import json

import helpers
import numpy as np
import pytest
from starlette.testclient import TestClient

from bertkit.cli import main
from bertkit.tokenizer import Tokenizer
from bertkit.use.embed import load_embedder
from bertkit.use.index import VectorIndex
from bertkit.use.serve import ServeConfig, create_app, load_model

DOCS = [
    "北京今天天气很好",
    "我喜欢吃苹果",
    "华为和苹果的手机",
    "公园里散步的人",
    "我们在北京开会",
    "天气预报说明天下雨",
]


def test_the_flat_index_is_brute_force_and_hnsw_reports_its_recall():
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(500, 24)).astype(np.float32), rng.normal(size=(20, 24)).astype(np.float32)
    ids = [f"d{i}" for i in range(500)]
    flat = VectorIndex.build(docs, ids, ids, {"model": "m"}, "flat")
    scores, found = flat.search(queries, 10)
    unit = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    cosines = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_array_equal(found, np.argsort(-cosines, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.sort(cosines, axis=1)[:, ::-1][:, :10], atol=1e-5)
    hnsw = VectorIndex.build(docs, ids, ids, {"model": "m"}, "hnsw", m=16, ef_construction=100, ef_search=64)
    assert 0.9 <= hnsw.meta["recall_at_10"] <= 1.0 and hnsw.meta["kind"] == "hnsw"
    with pytest.raises(Exception, match="appears twice"):
        VectorIndex.build(docs[:2], ["a", "a"], ["x", "y"], {"model": "m"})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    tok = Tokenizer.train(iter(DOCS * 5), vocab_size=120, min_frequency=1)
    helpers.save_tiny_bert(root / "a", tok, seed=0)
    helpers.save_tiny_bert(root / "b", tok, seed=1)
    (root / "docs.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(DOCS)),
        encoding="utf-8",
    )
    return root


def test_index_then_search_from_the_cli(folders, tmp_path, capsys):
    out = tmp_path / "idx"
    argv = ["index", str(folders / "a"), "--input", str(folders / "docs.jsonl"), "--id-field", "_id"]
    assert main([*argv, "--out", str(out)]) == 0
    meta = json.loads((out / "index.json").read_text())
    assert meta["count"] == len(DOCS) and meta["dim"] == 32 and meta["model"] == str(folders / "a")
    capsys.readouterr()
    assert main(["search", str(out), "--query", "北京天气", "--top-k", "3", "--output", str(tmp_path / "r.jsonl")]) == 0
    (row,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    embedder = load_embedder(folders / "a")
    q = embedder.encode("北京天气")
    d = embedder.encode(DOCS)
    cos = d @ q / np.linalg.norm(d, axis=1) / np.linalg.norm(q)
    assert [h["id"] for h in row["results"]] == [f"d{i}" for i in np.argsort(-cos)[:3]]
    assert row["results"][0]["score"] == pytest.approx(float(cos.max()), abs=1e-5)
    # another model's queries are refused, with one line and nothing written
    helpers.check_mistake(
        ["search", str(out), "--query", "北京", "--model", str(folders / "b"), "--output", str(tmp_path / "x.jsonl")],
        tmp_path,
        capsys,
        "the index was built with another model",
    )
    helpers.check_mistake(
        ["index", str(folders / "a"), "--input", str(folders / "docs.jsonl"), "--out", str(tmp_path / "idx2")],
        tmp_path,
        capsys,
        "field 'id'",
    )


def test_serve_search_answers_what_search_answers(folders, tmp_path):
    out = tmp_path / "idx"
    argv = ["index", str(folders / "a"), "--input", str(folders / "docs.jsonl"), "--id-field", "_id"]
    assert main([*argv, "--out", str(out), "--kind", "hnsw"]) == 0
    model = load_model(folders / "a", index=str(out))
    assert "/search" in model.endpoints
    with TestClient(create_app(model, ServeConfig())) as client:
        r = client.post("/search", json={"texts": ["北京天气", "苹果"], "top_k": 2})
        bad = client.post("/search", json={"texts": ["北京"], "top_k": 0})
    assert r.status_code == 200, r.text
    expected = VectorIndex.load(out).search_texts(load_embedder(folders / "a"), ["北京天气", "苹果"], 2)
    got = r.json()["results"]
    assert [[h["id"] for h in hits] for hits in got] == [[h["id"] for h in hits] for hits in expected]
    assert bad.status_code == 400 and "'top_k' must be a whole number in 1..6" in bad.json()["error"]
    with TestClient(create_app(load_model(folders / "a"), ServeConfig())) as client:
        missing = client.post("/search", json={"texts": ["北京"]})
    assert missing.status_code == 404 and "without an index" in missing.json()["error"]
    with pytest.raises(Exception, match="built with another model"):
        load_model(folders / "b", index=str(out))
