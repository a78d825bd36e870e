"""serve.py: every endpoint against the functions it serves, batching across concurrent clients, each 4xx,
health and readiness, and the real `bertkit serve` process (and a port in use)."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import numpy as np
import pytest
import torch
from helpers import tiny_config
from starlette.testclient import TestClient

from bertkit.cli.table import main
from bertkit.errors import BertkitError
from bertkit.finetune.predict import predict_texts
from bertkit.hf import build_heads, save_pretrained
from bertkit.model import BertEncoder
from bertkit.tokenizer import Tokenizer
from bertkit.use.fill_mask import fill_mask
from bertkit.use.serve import ServeConfig, app_from_env, create_app, load_model

TEXTS = ["The quick brown fox.", "我喜欢吃苹果", "a", "!", "word " * 400, "Café naïve — résumé 🤗"]  # "" is a 400
LINES = ["the cat sat on the mat", "Bill Gates met Jiang Zemin in Beijing", "we like apples and pears"] * 3


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return load_model(minilm_path)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    """Random 2-layer BERT folders with an MLM head, a sequence classifier, a BIO tagger and a regressor."""
    tok = Tokenizer.train(iter(LINES), vocab_size=200, min_frequency=1)
    base = tiny_config(tok.vocab_size)
    torch.manual_seed(0)
    folders = {}
    for name, heads, labels in [
        ("mlm", ["mlm"], {}),
        ("classifier", ["classifier"], {0: "negative", 1: "positive"}),
        ("tagger", ["token_classifier"], {0: "O", 1: "B-PER", 2: "I-PER"}),
        ("regressor", ["classifier"], {0: "LABEL_0"}),  # one output: regression, as transformers reads it
    ]:
        config = replace(base, id2label=labels)
        folders[name] = tmp_path_factory.mktemp(name)
        encoder = BertEncoder(config, add_pooler=name != "tagger")
        save_pretrained(folders[name], encoder, build_heads(config, heads), tok)
    return folders


def _client(model, **config) -> TestClient:
    return TestClient(create_app(model, ServeConfig(**config)))


# ---- endpoints give what the functions they serve give --------------------------------------------------


def test_embed_equals_encode(minilm):
    with _client(minilm) as client:
        r = client.post("/embed", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    vectors = np.array(body["vectors"], dtype=np.float32)
    assert body["dim"] == 384 and vectors.shape == (len(TEXTS), 384)
    assert np.abs(vectors - minilm.embedder.encode(TEXTS)).max() < 1e-5


def test_concurrent_clients_are_batched_and_get_their_own_rows(minilm):
    """12 clients at once (asyncio.gather): far fewer model calls than requests, each answer its own texts'."""
    requests = [TEXTS[i % len(TEXTS) :] + [f"client {i} says hello"] for i in range(12)]
    app = create_app(minilm, ServeConfig(max_batch_size=32, batch_wait_ms=50))

    async def clients():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                return await asyncio.gather(*(client.post("/embed", json={"texts": t}) for t in requests))

    responses = asyncio.run(clients())
    batcher = app.state.server.batchers["/embed"]
    assert batcher.requests == len(requests)
    assert batcher.calls < len(requests) / 2  # requests were merged...
    assert batcher.largest <= 32  # ...into batches no larger than max_batch_size
    expected = minilm.embedder.encode([t for texts in requests for t in texts])
    start = 0
    for texts, r in zip(requests, responses, strict=True):
        assert r.status_code == 200, r.text
        got = np.array(r.json()["vectors"], dtype=np.float32)
        assert got.shape == (len(texts), 384)
        assert np.abs(got - expected[start : start + len(texts)]).max() < 1e-5
        start += len(texts)


def test_fill_mask_classify_and_tag(tiny_folders):
    mlm, clf, tagger = (load_model(tiny_folders[k]) for k in ("mlm", "classifier", "tagger"))
    assert (mlm.endpoints, clf.endpoints, tagger.endpoints) == (
        ["/embed", "/fill-mask"],
        ["/embed", "/classify"],
        ["/embed", "/tag"],
    )
    with _client(mlm) as client:
        r = client.post("/fill-mask", json={"text": "the cat [MASK] on the [MASK]", "top_k": 3})
        assert r.status_code == 200, r.text
        expected = fill_mask(mlm.mlm, "the cat [MASK] on the [MASK]", top_k=3)
        got = r.json()["masks"]
        assert [[c["token"] for c in m] for m in got] == [[t for t, _ in m] for m in expected]
        assert np.allclose([[c["score"] for c in m] for m in got], [[p for _, p in m] for m in expected], atol=1e-6)
        assert client.post("/classify", json={"texts": ["x"]}).status_code == 404
    with _client(clf) as client:
        r = client.post("/classify", json={"texts": LINES[:3], "pairs": LINES[3:6]})
        assert r.status_code == 200, r.text
        expected = predict_texts(clf.task, clf.embedder.tokenizer, LINES[:3], LINES[3:6])
        _assert_records_equal(r.json()["results"], expected)
    with _client(tagger) as client:
        r = client.post("/tag", json={"texts": LINES[:3]})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        _assert_records_equal(results, predict_texts(tagger.task, tagger.embedder.tokenizer, LINES[:3]))
        assert all("entities" in rec for rec in results)  # O / B-PER / I-PER: spans with offsets


def test_a_regressor_is_served_on_classify(tiny_folders):
    regressor = load_model(tiny_folders["regressor"])
    assert regressor.endpoints == ["/embed", "/classify"]
    with _client(regressor) as client:
        r = client.post("/classify", json={"texts": LINES[:2]})
    assert r.status_code == 200, r.text
    expected = predict_texts(regressor.task, regressor.embedder.tokenizer, LINES[:2])
    assert [set(rec) for rec in r.json()["results"]] == [{"text", "value"}] * 2
    assert np.allclose([rec["value"] for rec in r.json()["results"]], [rec["value"] for rec in expected], atol=1e-5)


def test_batched_classification_equals_unbatched(tiny_folders):
    """Requests with and without a second text merged into one batch: each as if it ran alone."""
    clf = load_model(tiny_folders["classifier"])
    app = create_app(clf, ServeConfig(batch_wait_ms=50))
    bodies = [{"texts": [t]} for t in LINES[:4]] + [
        {"texts": [t], "pairs": [p]} for t, p in zip(LINES[:4], LINES[4:8], strict=True)
    ]

    async def clients():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                return await asyncio.gather(*(client.post("/classify", json=b) for b in bodies))

    responses = asyncio.run(clients())
    assert app.state.server.batchers["/classify"].calls < len(bodies)
    for body, r in zip(bodies, responses, strict=True):
        alone = predict_texts(clf.task, clf.embedder.tokenizer, body["texts"], body.get("pairs"))
        _assert_records_equal(r.json()["results"], alone)


def test_a_bad_request_in_a_batch_fails_alone(tiny_folders):
    """A fill-mask text without [MASK] batched with good ones: a 400 for it, answers for the others."""
    mlm = load_model(tiny_folders["mlm"])
    app = create_app(mlm, ServeConfig(batch_wait_ms=50))
    texts = ["the [MASK] sat", "no mask here", "we like [MASK]"]

    async def clients():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                return await asyncio.gather(*(client.post("/fill-mask", json={"text": t}) for t in texts))

    good, bad, good2 = asyncio.run(clients())
    assert good.status_code == good2.status_code == 200
    assert bad.status_code == 400 and "no [MASK]" in bad.json()["error"]


def _assert_records_equal(got: list[dict], expected: list[dict]) -> None:
    """Same labels / spans; scores equal to 1e-5 (batches pad differently)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert json.dumps(_labels_only(g)) == json.dumps(_labels_only(e))
        assert np.allclose(_scores(g), _scores(e), atol=1e-5)


def _labels_only(x):
    if isinstance(x, dict):
        return {k: _labels_only(v) for k, v in x.items() if k not in ("score", "scores")}
    return [_labels_only(v) for v in x] if isinstance(x, list) else x


def _scores(x) -> list[float]:
    if isinstance(x, dict):
        own = [x["score"]] if "score" in x else []
        own += list(x.get("scores", {}).values())
        return own + [s for k, v in x.items() if k not in ("score", "scores") for s in _scores(v)]
    return [s for v in x for s in _scores(v)] if isinstance(x, list) else []


# ---- bad requests -----------------------------------------------------------------------------------------


BAD_REQUESTS = [
    ("/embed", {"texts": []}, 400, "empty"),
    ("/embed", {"texts": ["a"] * 9}, 413, "the limit is 8 (--max-texts)"),
    ("/embed", {"texts": ["a", 3]}, 400, "'texts'[1] is a number, not a string"),
    ("/embed", {"texts": ["a", None]}, 400, "'texts'[1] is null"),
    ("/embed", {"texts": "a single string"}, 400, "must be a list of strings, got a string"),
    ("/embed", {"text": ["a"]}, 400, "missing field 'texts'"),
    ("/embed", {"texts": ["a"], "normalise": True}, 400, "unknown field 'normalise'"),
    ("/embed", b"{not json", 400, "not JSON"),
    ("/embed", b"[1, 2]", 400, "must be a JSON object, got a list"),
    ("/embed", b'{"texts": ["\xff\xfe"]}', 400, "not UTF-8"),
    # Refused as too deep, or (where Python's C recursion limit is higher) parsed and refused as not a string.
    ("/embed", b'{"texts": ' + b"[" * 1400 + b"]" * 1400 + b"}", 400, ""),
    ("/embed", b'{"texts": ["' + b"x" * 4000 + b'"]}', 413, "the limit is 3000 (--max-request-bytes)"),
    ("/classify", {"texts": ["a"]}, 404, "/classify is not available"),
    ("/tag", {"texts": ["a"]}, 404, "it serves /embed"),
    ("/fill-mask", {"text": "a [MASK]"}, 404, "has no MLM head"),
    ("/nowhere", {"texts": ["a"]}, 404, "Not Found"),
]


def test_bad_requests_get_4xx_and_the_server_goes_on(minilm):
    with _client(minilm, max_texts=8, max_request_bytes=3000) as client:
        for path, body, status, fragment in BAD_REQUESTS:
            kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
            r = client.post(path, **kwargs)
            assert r.status_code == status, (path, body, r.text)
            assert fragment in r.json()["error"], (fragment, r.json())
        assert client.get("/embed").status_code == 405 and "error" in client.get("/embed").json()
        # A body streamed without Content-Length is cut off at the limit too.
        r = client.post("/embed", content=iter([b'{"texts": ["', b"x" * 2000, b"x" * 2000, b'"]}']))
        assert r.status_code == 413
        r = client.post("/embed", json={"texts": ["still here"]})
        assert r.status_code == 200 and len(r.json()["vectors"]) == 1


def test_fill_mask_bad_fields(tiny_folders):
    with _client(load_model(tiny_folders["mlm"])) as client:
        for body, fragment in [
            ({"text": ["the [MASK]"]}, "'text' must be a string"),
            ({"text": "the [MASK]", "top_k": 0}, "'top_k' must be a whole number"),
            ({"text": "the [MASK]", "top_k": True}, "'top_k' must be a whole number"),
            ({"text": "no mask"}, "no [MASK]"),
        ]:
            r = client.post("/fill-mask", json=body)
            assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_an_internal_error_is_a_500_and_the_server_goes_on(minilm, monkeypatch):
    calls = []

    def broken(texts, **settings):
        calls.append(texts)
        raise RuntimeError("out of memory, say")

    with _client(minilm) as client:
        monkeypatch.setattr(minilm.embedder, "encode", broken)
        r = client.post("/embed", json={"texts": ["a"]})
        assert r.status_code == 500 and "out of memory, say" in r.json()["error"]
        monkeypatch.undo()
        assert client.post("/embed", json={"texts": ["a"]}).status_code == 200
    assert calls == [["a"]]


# ---- health, readiness, the factory ------------------------------------------------------------------------


def test_health_and_ready_while_loading(minilm, monkeypatch):
    """Given a folder, the app answers /health at once and /ready with 503 until the model is loaded."""
    release = threading.Event()

    def slow_load(folder, *settings):
        release.wait(30)
        return minilm

    monkeypatch.setattr("bertkit.use.serve.load_model", slow_load)
    with TestClient(create_app("some/folder")) as client:
        assert client.get("/health").json() == {"status": "ok"}
        r = client.get("/ready")
        assert r.status_code == 503 and r.json() == {"ready": False, "error": "loading some/folder"}
        assert client.post("/embed", json={"texts": ["a"]}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while (r := client.get("/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.json() == {"ready": True, "model": "some/folder", "endpoints": ["/embed"]}
        assert client.post("/embed", json={"texts": ["a"]}).status_code == 200


def test_ready_names_a_load_error(tmp_path):
    with TestClient(create_app(tmp_path / "missing")) as client:
        deadline = time.monotonic() + 30
        while "cannot load" not in client.get("/ready").text and time.monotonic() < deadline:
            time.sleep(0.05)
        r = client.get("/ready")
        assert r.status_code == 503 and "no such model folder" in r.json()["error"]
        assert client.get("/health").status_code == 200
        r = client.post("/embed", json={"texts": ["a"]})
        assert r.status_code == 503 and "no such model folder" in r.json()["error"]


def test_app_factory_reads_the_environment(minilm_path, monkeypatch):
    monkeypatch.delenv("BERTKIT_SERVE_MODEL", raising=False)
    with pytest.raises(BertkitError, match="set BERTKIT_SERVE_MODEL"):
        app_from_env()
    monkeypatch.setenv("BERTKIT_SERVE_MODEL", str(minilm_path))
    monkeypatch.setenv("BERTKIT_SERVE_MAX_TEXTS", "2")
    app = app_from_env()
    assert app.state.server.config == ServeConfig(max_texts=2)
    monkeypatch.setenv("BERTKIT_SERVE_BATCH_WAIT_MS", "soon")
    with pytest.raises(BertkitError, match="BERTKIT_SERVE_BATCH_WAIT_MS='soon': expected float"):
        app_from_env()
    with pytest.raises(BertkitError, match="--max-batch-size must be at least 1"):
        ServeConfig(max_batch_size=0)


# ---- the real process -----------------------------------------------------------------------------------


def _bertkit(*args: str, **kwargs) -> subprocess.Popen:
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([exe, *args], env=env, text=True, **kwargs)


def test_bertkit_serve_answers_concurrent_clients(minilm_path, minilm):
    proc = _bertkit("serve", str(minilm_path), "--port", "0", stderr=subprocess.PIPE)
    try:
        line = proc.stderr.readline()  # "serving FOLDER (/embed) on http://127.0.0.1:PORT; ..."
        assert line.startswith("serving") and "(/embed)" in line, line
        url = line.split(" on ")[1].split(";")[0]
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/ready").json()["ready"] is True
            with ThreadPoolExecutor(4) as pool:
                responses = list(pool.map(lambda t: client.post("/embed", json={"texts": [t]}), TEXTS))
            assert client.post("/embed", json={"texts": []}).status_code == 400
        got = np.array([r.json()["vectors"][0] for r in responses], dtype=np.float32)
        assert np.abs(got - minilm.embedder.encode(TEXTS)).max() < 1e-5
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[1]
    # uvicorn shuts down gracefully on SIGTERM, then exits by the same signal, as process managers expect.
    assert "Application shutdown complete" in rest and proc.returncode == -signal.SIGTERM


def test_a_port_in_use_is_a_one_line_error(minilm_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _bertkit("serve", str(minilm_path), "--port", str(port), stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert (
        err.strip()
        == f"bertkit: error: port {port} on 127.0.0.1 is already in use; stop what holds it or pick another --port"
    )


def test_serve_help_says_how_to_run_several_workers(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "uvicorn bertkit.use.serve:app_from_env --factory --workers N" in out
    assert "BERTKIT_SERVE_MODEL=FOLDER" in out
