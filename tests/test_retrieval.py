"""Retrieval: the sentence-transformers folders embed-train writes, the metrics against pytrec_eval, BM25 and
fusion, the built-in benchmark's construction, BEIR folders, and embed-train's runs (same seed, same bits;
exact resume; dev scores)."""

from __future__ import annotations

import json
import random
import shutil

import helpers
import numpy as np
import pytest
import torch

from bertkit.cli import main
from bertkit.errors import DataError
from bertkit.retrieval.benchmark import RetrievalSet, peoples_daily_retrieval, read_beir, write_beir
from bertkit.retrieval.metrics import METRICS, query_metrics, reciprocal_rank_fusion
from bertkit.retrieval.search import bm25_rankings, hybrid_rankings, score_rankings
from bertkit.retrieval.sentence_model import SentenceModel
from bertkit.tokenizer import Tokenizer
from bertkit.use.embed import Dense, load_embedder

TEXTS = ["我们今天在北京开会。", "今天天气很好。", "苹果和华为哪个牌子好", "我喜欢吃苹果", "the cat sat on the mat"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    lines = [*TEXTS, "北京的天气很好", "华为手机", "公园散步"] * 5
    tok = Tokenizer.train(iter(lines), vocab_size=150, min_frequency=1)
    return helpers.save_tiny_bert(root / "plain", tok)


def st_vectors(folder, texts):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_saved_folder_loads_in_sentence_transformers_with_the_same_vectors(plain, tmp_path, pooling):
    model = SentenceModel.from_folder(plain, pooling=pooling, normalize=True)
    model.save(tmp_path / "st")
    ours = load_embedder(tmp_path / "st").encode(TEXTS)
    np.testing.assert_allclose(st_vectors(tmp_path / "st", TEXTS), ours, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)  # the Normalize module was written
    assert load_embedder(tmp_path / "st").pooling == pooling


def test_a_dense_layer_and_the_real_minilm_survive_the_round_trip(plain, minilm_path, tmp_path):
    embedder = load_embedder(plain, normalize=False)
    torch.manual_seed(0)
    embedder.dense.append(Dense(32, 8, True, torch.nn.Tanh()))
    SentenceModel(embedder).save(tmp_path / "dense")
    ours = load_embedder(tmp_path / "dense").encode(TEXTS)
    assert ours.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(st_vectors(tmp_path / "dense", TEXTS), ours, atol=1e-5)
    SentenceModel.from_folder(minilm_path).save(tmp_path / "minilm")  # all-MiniLM-L6-v2: mean, normalised
    np.testing.assert_allclose(st_vectors(tmp_path / "minilm", TEXTS), st_vectors(minilm_path, TEXTS), atol=1e-5)


def test_metrics_match_pytrec_eval_on_random_runs():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(150)]
    qrels, run, ours = {}, {}, {}
    for q in range(40):
        relevant = rng.sample(docs, rng.randint(1, 12))
        qrels[f"q{q}"] = {d: rng.choice([1, 1, 2, 3]) for d in relevant}
        ranking = rng.sample(docs, 120)
        run[f"q{q}"] = {d: float(120 - i) for i, d in enumerate(ranking)}  # distinct scores: no tie order
        ours[f"q{q}"] = query_metrics(ranking, qrels[f"q{q}"])
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"recall.1,10,100", "ndcg_cut.10"}).evaluate(run)
    run10 = {q: {d: s for d, s in r.items() if s > 110} for q, r in run.items()}  # the first 10
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run10)
    for q in qrels:
        assert ours[q]["recall@1"] == pytest.approx(trec[q]["recall_1"])
        assert ours[q]["recall@10"] == pytest.approx(trec[q]["recall_10"])
        assert ours[q]["recall@100"] == pytest.approx(trec[q]["recall_100"])
        assert ours[q]["ndcg@10"] == pytest.approx(trec[q]["ndcg_cut_10"])
        assert ours[q]["mrr@10"] == pytest.approx(rr[q]["recip_rank"])
    assert set(ours["q0"]) == set(METRICS)


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=1)
    # a: 1/2 + 1/3, b: 1/3, c: 1/4 + 1/2, d: 1/4
    assert fused == ["a", "c", "b", "d"]


def small_set() -> RetrievalSet:
    corpus = {"d1": "北京今天天气很好", "d2": "我喜欢吃苹果", "d3": "华为和苹果的手机", "d4": "公园里散步的人"}
    queries = {"q1": "北京天气", "q2": "苹果手机", "q3": "散步"}
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1, "d2": 1}, "q3": {"d4": 1}}
    return RetrievalSet(corpus, queries, qrels)


@pytest.mark.parametrize("unit", ["chars", "words"])
def test_bm25_finds_the_documents_that_share_the_querys_terms(unit):
    data = small_set()
    rankings, timings = bm25_rankings(data, unit)
    assert rankings["q1"][0] == "d1" and rankings["q3"][0] == "d4" and rankings["q2"][0] == "d3"
    assert sorted(rankings["q1"]) == sorted(data.corpus)  # every document, the unmatched ones by corpus order
    assert timings["queries_per_s"] > 0
    scores = score_rankings(rankings, data)
    assert scores["q1"]["mrr@10"] == 1.0 and scores["q2"]["recall@10"] == 1.0
    fused = hybrid_rankings(rankings, {q: list(reversed(r)) for q, r in rankings.items()})
    assert sorted(fused["q1"]) == sorted(data.corpus)


def test_the_built_in_benchmark_holds_its_articles_apart():
    pairs, dev, test = peoples_daily_retrieval()
    assert len(pairs) > 9000 and len(dev.queries) > 250 and len(test.queries) > 250
    train_queries = {q for q, _ in pairs}
    assert not train_queries & set(dev.queries.values()) and not train_queries & set(test.queries.values())
    train_paragraphs = {p for _, p in pairs}
    assert len(train_paragraphs & set(test.corpus.values())) < 0.02 * len(test.corpus)  # repeated boilerplate only
    for data in (dev, test):
        assert set(data.qrels) == set(data.queries)
        assert all(d in data.corpus for rel in data.qrels.values() for d in rel)
        assert len(set(data.queries.values())) == len(data.queries)  # no ambiguous titles
    again = peoples_daily_retrieval()
    assert again[2].qrels == test.qrels and again[0] == pairs  # a fixed split


def test_beir_folders_round_trip_and_bad_qrels_name_their_line(tmp_path):
    data = small_set()
    write_beir(tmp_path / "b", data)
    back = read_beir(tmp_path / "b")
    assert back.corpus == data.corpus and back.queries == data.queries and back.qrels == data.qrels
    with open(tmp_path / "b" / "qrels" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("q1\tnope\t1\n")
    with pytest.raises(DataError, match=r"test.tsv: line 6: document 'nope' is not in corpus.jsonl"):
        read_beir(tmp_path / "b")


def write_pairs(path, n=40, negatives=False):
    rng = random.Random(1)
    words = ["北京", "天气", "苹果", "华为", "公园", "散步", "开会", "今天", "手机", "喜欢"]
    rows = []
    for i in range(n):
        a, b = rng.sample(words, 2)
        row = {"query": f"{a}{i}", "positive": f"{a}{b}{i}{rng.choice(words)}"}
        if negatives:
            row["negatives"] = [f"{rng.choice(words)}{rng.choice(words)}"]
        rows.append(row)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_embed_train_same_seed_same_bits_exact_resume_and_a_loss_that_falls(plain, tmp_path):
    train = write_pairs(tmp_path / "pairs.jsonl", negatives=True)

    def run(out, *extra):
        argv = ["embed-train", "--model", str(plain), "--train", str(train), "--out", str(out), "--batch-size", "8"]
        return main([*argv, "--epochs", "4", "--lr", "1e-3", "--save-every", "5", "--precision", "fp32", *extra])

    assert run(tmp_path / "a", "--dev", str(train)) == 0
    a = tmp_path / "a"
    rows = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    losses = [r["in-batch_loss"] for r in rows if "in-batch_loss" in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    assert losses[-1] < losses[0] and len(evals) == 4 and evals[-1]["ndcg_at_10"] > evals[0]["ndcg_at_10"]
    assert (a / "curves.png").is_file() and json.loads((a / "model" / "modules.json").read_text())[-1][
        "path"
    ] == "1_Pooling"
    assert run(tmp_path / "b", "--dev", str(train)) == 0
    b = tmp_path / "b"
    weights = (a / "model" / "model.safetensors").read_bytes()
    assert (b / "model" / "model.safetensors").read_bytes() == weights
    last = sorted((b / "checkpoints").iterdir())[-1]
    shutil.rmtree(b / "model")  # as if killed after the last checkpoint
    (b / "summary.json").unlink()
    assert last.name.startswith("step-")
    assert run(b, "--dev", str(train), "--resume") == 0
    assert (b / "model" / "model.safetensors").read_bytes() == weights
    np.testing.assert_allclose(st_vectors(a / "model", TEXTS), load_embedder(a / "model").encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize("loss", ["simcse", "cosent"])
def test_simcse_and_cosent_runs_learn(plain, tmp_path, loss):
    if loss == "simcse":
        train = tmp_path / "texts.txt"
        train.write_text("\n".join(f"{t}{i}" for i in range(6) for t in TEXTS) + "\n", encoding="utf-8")
    else:
        train = tmp_path / "scored.csv"
        rows = [f"{a},{b},{(i * 7) % 5}" for i, (a, b) in enumerate(zip(TEXTS * 4, TEXTS[1:] * 5, strict=False))]
        train.write_text("sentence1,sentence2,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / loss
    argv = ["embed-train", "--model", str(plain), "--train", str(train), "--out", str(out), "--loss", loss]
    assert main([*argv, "--batch-size", "8", "--epochs", "6", "--lr", "1e-3", "--precision", "fp32"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r[f"{loss}_loss"] for r in rows if f"{loss}_loss" in r]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"query": "北京"}, "line 2: no column 'positive'"),
        ({"query": "  ", "positive": "北京"}, "line 2: column 'query' is empty"),
        ({"query": "北京", "positive": "天气", "negatives": "公园"}, "line 2: field 'negatives' should be a list"),
    ],
)
def test_bad_pairs_are_one_line_naming_file_and_line(plain, tmp_path, capsys, row, message):
    train = tmp_path / "data" / "pairs.jsonl"
    train.parent.mkdir()
    good = {"query": "今天", "positive": "天气很好"}
    train.write_text(json.dumps(good, ensure_ascii=False) + "\n" + json.dumps(row, ensure_ascii=False) + "\n")
    argv = ["embed-train", "--model", str(plain), "--train", str(train), "--out", str(tmp_path / "data" / "run")]
    helpers.check_mistake(argv, tmp_path, capsys, message)


def test_retrieval_data_and_eval_write_per_query_scores(plain, tmp_path):
    assert main(["retrieval", "data", "--out", str(tmp_path / "rd")]) == 0
    test = read_beir(tmp_path / "rd" / "test")
    assert len(test.queries) > 250
    small = RetrievalSet(dict(list(test.corpus.items())[:60]), {}, {})  # a small slice keeps the tiny model's run short
    for q, rel in test.qrels.items():
        if set(rel) <= set(small.corpus):
            small.queries[q], small.qrels[q] = test.queries[q], rel
    write_beir(tmp_path / "small", small)
    for flags, name in (
        (["--bm25", "chars"], "bm25-chars"),
        (["--model", str(plain)], "dense"),
        (["--model", str(plain), "--bm25", "words"], "hybrid"),
    ):
        out = tmp_path / name
        assert main(["retrieval", "eval", "--data", str(tmp_path / "small"), "--out", str(out), *flags]) == 0
        summary = json.loads((out / "summary.json").read_text())
        rows = [json.loads(x) for x in (out / "query_scores.jsonl").read_text().splitlines()]
        assert summary["system"] == name and len(rows) == len(small.queries)
        assert summary["metrics"]["ndcg@10"] == pytest.approx(sum(r["ndcg@10"] for r in rows) / len(rows))


def test_mined_negatives_come_from_the_window_and_never_are_a_positive(plain):
    from bertkit.retrieval.data import Pair
    from bertkit.retrieval.mining import mine_negatives

    docs = [f"{a}{b}" for a in ["北京", "天气", "苹果", "华为", "公园"] for b in ["很好", "开会", "手机", "散步"]]
    pairs = [Pair("北京天气", "北京很好"), Pair("北京天气", "天气很好"), Pair("苹果手机", "苹果手机")]
    embedder = load_embedder(plain)
    mined, counts = mine_negatives(embedder, pairs, docs, low=2, high=6, count=2, seed=0)
    ranked = docs_by_cosine(embedder, "北京天气", docs)
    window = [d for d in ranked if d not in {"北京很好", "天气很好"}][2:6]
    assert mined[0].negatives == mined[1].negatives and len(mined[0].negatives) == 2
    assert set(mined[0].negatives) <= set(window)
    assert all("苹果手机" not in p.negatives for p in mined[2:])
    top, _ = mine_negatives(embedder, pairs, docs, low=2, high=6, count=2, sampling="top")
    assert top[0].negatives == window[:2] and counts["short"] == 0
    again, _ = mine_negatives(embedder, pairs, docs, low=2, high=6, count=2, seed=0)
    assert [p.negatives for p in again] == [p.negatives for p in mined]


def docs_by_cosine(embedder, query, docs):
    q, d = embedder.encode(query), embedder.encode(docs)
    cos = d @ q / np.linalg.norm(d, axis=1) / np.linalg.norm(q)
    return [docs[i] for i in np.argsort(-cos, kind="stable")]


def test_compare_pairs_two_retrieval_runs_by_query(tmp_path, capsys):
    def run(folder, values):
        folder.mkdir(parents=True)
        rows = [{"query": f"q{i}", **dict.fromkeys(METRICS, v)} for i, v in enumerate(values)]
        (folder / "query_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    rng = np.random.default_rng(0)
    b = rng.uniform(0, 0.5, 200)
    run(tmp_path / "a" / "seed-0", b + 0.2)
    run(tmp_path / "a" / "seed-1", b + 0.1)
    run(tmp_path / "b", b)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "mrr@10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "200 queries; mrr@10" in out[0]
    assert out[-2].startswith("mean of the 2 runs above") and "+0.1500 [+0.1500, +0.1500]" in out[-2]
    run(tmp_path / "c", b[:100])
    helpers.check_mistake(["compare", str(tmp_path / "a"), str(tmp_path / "c")], tmp_path, capsys, "same queries")
