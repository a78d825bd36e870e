"""A fuzzer over every endpoint of `bertkit serve`: request bodies with JSON of every type in every field,
texts at every edge (empty, whitespace, control and zero-width characters, lone surrogates, [MASK] absent or
many, longer than the model), bodies that are not JSON, not UTF-8 or over the limit, and every method on
every path.

The invariant, for every draw: never a 5xx; a 4xx is a JSON object with a string "error"; a 2xx has the
documented shape, with one finite answer per text, and only for texts there is something to read in.

`make test` runs a fixed, derandomised budget; `BERTKIT_FUZZ_EXAMPLES=N` runs N examples per test. What the
fuzzer found is kept as explicit examples, and the requests that were fixed are in CASES (docs/bad-input.md
prints them).
"""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import ExitStack

import httpx
import pytest
import torch
from helpers import fuzz_settings, one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture
from hypothesis import HealthCheck, event, example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bertkit.finetune.model import build_model, save_task_model
from bertkit.hf import build_heads, load_pretrained, save_pretrained
from bertkit.tokenizer import Tokenizer
from bertkit.use.serve import ServeConfig, create_app, load_model

FUZZ = fuzz_settings(300, HealthCheck.data_too_large)
LIMIT = 8192  # --max-request-bytes: small, so that bodies over it are drawn often
MAX_TEXTS = 8  # --max-texts
LABELS = {"clf": ["neg", "pos"], "ner": ["O", "B-LOC", "I-LOC"], "crf": ["O", "B-LOC", "I-LOC"]}
SERVES = {  # which folders serve each endpoint; the others answer it with 404
    "/embed": ["mlm", "clf", "reg", "ner", "crf"],
    "/classify": ["clf", "reg"],
    "/tag": ["ner", "crf"],
    "/fill-mask": ["mlm"],
}


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """A started app per tiny folder: an MLM head, a classifier, a regressor, a BIO tagger with and without CRF."""
    root = tmp_path_factory.mktemp("fuzz-http")
    tok = Tokenizer.train(
        iter(["我们今天在北京开会。", "the cat sat on the mat", "好 差 一般"] * 5), vocab_size=120, min_frequency=1
    )
    plain = save_tiny_bert(root / "plain", tok)
    ckpt = load_pretrained(plain)
    save_pretrained(root / "mlm", ckpt.encoder, build_heads(ckpt.config, ["mlm"]), tok)
    torch.manual_seed(0)  # the heads: the same weights, so the same draws, whatever ran before
    for name, kind, crf in [
        ("clf", "classification", False),
        ("reg", "regression", False),
        ("ner", "tagging", False),
        ("crf", "tagging", True),
    ]:
        model, model_tok = build_model(plain, kind, LABELS.get(name, ["score"]), crf=crf)
        save_task_model(root / name, model, model_tok)
    config = ServeConfig(max_texts=MAX_TEXTS, max_request_bytes=LIMIT, batch_wait_ms=0)
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(TestClient(create_app(load_model(root / name), config)))
            for name in ("mlm", "clf", "reg", "ner", "crf")
        }


def send(client: TestClient, method: str, path: str, body: bytes, content_type: str = "application/json"):
    headers = {"content-type": content_type} if content_type else {}
    return client.request(method, path, content=body, headers=headers)


# ---- the invariant --------------------------------------------------------------------------------------


def check(response, path: str, body: bytes) -> None:
    """Never a 5xx; a 4xx says why in {"error": ...}; a 2xx has the shape `path` documents."""
    status = response.status_code
    event(f"{path} {status}")  # --hypothesis-show-statistics: how often each answer was drawn
    assert status < 500, (path, body[:200], response.text[:500])
    if path in SERVES and len(body) > LIMIT:
        assert status == 413, (path, len(body), response.text[:200])
    if status >= 400:
        answer = response.json()
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
        assert "Traceback" not in answer["error"]
    elif status == 200 and path in SHAPES:
        SHAPES[path](response.json(), json.loads(body))


def _texts_ok(texts: list[str]) -> None:
    assert texts and all(isinstance(t, str) and t.strip() for t in texts), texts  # nothing answered about nothing


def embed_shape(answer: dict, sent: dict) -> None:
    _texts_ok(sent["texts"])
    vectors = answer["vectors"]
    assert len(vectors) == len(sent["texts"]) and answer["dim"] == 32
    assert all(len(v) == 32 and all(math.isfinite(x) for x in v) for v in vectors)


def classify_shape(answer: dict, sent: dict) -> None:
    texts, pairs = sent["texts"], sent.get("pairs", [])
    _texts_ok(texts + pairs)
    assert len(answer["results"]) == len(texts) and (not pairs or len(pairs) == len(texts))
    for text, record in zip(texts, answer["results"], strict=True):
        assert record["text"] == text
        if "value" in record:  # the regressor
            assert set(record) == {"text", "value"} and math.isfinite(record["value"])
            continue
        scores = record["scores"]
        assert set(scores) == set(LABELS["clf"]) and abs(sum(scores.values()) - 1) < 1e-3
        assert record["label"] == max(scores, key=scores.get) and record["score"] == scores[record["label"]]


def tag_shape(answer: dict, sent: dict) -> None:
    _texts_ok(sent["texts"])
    assert len(answer["results"]) == len(sent["texts"])
    for text, record in zip(sent["texts"], answer["results"], strict=True):
        assert record["text"] == text and set(record) == {"text", "entities"}
        for e in record["entities"]:
            assert e["type"] == "LOC" and 0 <= e["start"] < e["end"] <= len(text), (text, e)
            assert text[e["start"] : e["end"]] == e["text"], (text, e)  # offsets point at the entity's text
            assert 0 <= e["score"] <= 1


def fill_mask_shape(answer: dict, sent: dict) -> None:
    text, top_k = sent["text"], sent.get("top_k", 5)
    _texts_ok([text])
    assert answer["text"] == text
    assert len(answer["masks"]) == text.count("[MASK]"), (text, len(answer["masks"]))  # one list per [MASK]
    for mask in answer["masks"]:
        scores = [c["score"] for c in mask]
        assert len(mask) == top_k and all(isinstance(c["token"], str) for c in mask)
        assert all(0 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)


SHAPES = {"/embed": embed_shape, "/classify": classify_shape, "/tag": tag_shape, "/fill-mask": fill_mask_shape}


# ---- what a careless client sends -----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
WORDS = [
    *"我们 今天 北京 好 差 the cat sat mat Café naïve 🤗 ! ? ,".split(),
    *"İstanbul ﬁne Straße ǅ Ⅻ ① ｆｕｌｌ नमस्ते مرحبا e\u0301".split(),  # one character becomes several, or none
    *["[CLS]", "[SEP]", "[PAD]", "[UNK]"],
]
ODD = [" ", "\n", "\t", "\u3000", "\x00", "\x7f", "\u200b", "\ufeff", "\u0301", "\u00ad", "\ufffd", "\u202e"]
PIECES = [*WORDS, *ODD, "[MASK]", "<mask>", "[mask]", "[MASK"]
SURROGATES = st.characters(categories=["Cs"])  # JSON can escape them ("\ud800"); text cannot hold them
GOOD = st.tuples(st.sampled_from(WORDS), st.lists(st.sampled_from(PIECES), max_size=6)).map(
    lambda p: " ".join([p[0], *p[1]])  # a word, then anything
)
TEXTS = st.one_of(
    GOOD,
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),  # the empty text among them
    st.lists(st.sampled_from(PIECES), max_size=8).map(" ".join),
    st.text(max_size=20),
    st.text(st.characters() | SURROGATES, min_size=1, max_size=6),
    st.tuples(st.sampled_from(["好", "the ", "[MASK]", "\u200b", "!"]), st.integers(30, 1500)).map(
        lambda p: p[0] * p[1]  # past the model's 64 tokens, and past the body limit
    ),
)
TEXT_LISTS = st.one_of(
    st.lists(TEXTS, min_size=1, max_size=3),
    st.lists(TEXTS, max_size=MAX_TEXTS + 3),
    st.lists(TEXTS | JSON_VALUES, max_size=3),
    JSON_VALUES,
)
MASKED = st.tuples(
    st.lists(st.sampled_from(PIECES) | st.just("[MASK]"), min_size=1, max_size=8), st.sampled_from(["", " "])
)
MASKED = MASKED.map(lambda p: p[1].join(p[0]))  # [MASK] beside other text, or apart
TOP_K = st.one_of(
    st.integers(1, 40),
    st.integers(-2, 45),
    st.integers(),
    st.floats(),
    st.sampled_from([2.0, 1e309, -1e309, 10**30, True, False, None, "5", [5]]),
    JSON_VALUES,
)
GOOD_LISTS = st.lists(GOOD, min_size=1, max_size=4)
TEXT_FIELDS = {"texts": TEXT_LISTS}
PAIRED = st.integers(1, 4).flatmap(  # texts with or without as many second texts
    lambda n: st.fixed_dictionaries(
        {"texts": st.lists(GOOD, min_size=n, max_size=n)}, optional={"pairs": st.lists(GOOD, min_size=n, max_size=n)}
    )
)
MASK_FIELDS = st.fixed_dictionaries(
    {"text": st.lists(st.sampled_from(WORDS) | st.just("[MASK]"), min_size=1, max_size=6).map(" [MASK] ".join)},
    optional={"top_k": st.integers(1, 40)},
)


def encode(value) -> bytes:
    """JSON as a client writes it; ASCII, so a lone surrogate goes as its escape ("\\ud800")."""
    return json.dumps(value).encode()


def raw_bodies(field: str) -> list[bytes]:
    """Bodies built by hand for `field`: not JSON, not UTF-8, not an object, repeated keys, over the limit."""
    good = f'{{"{field}": ["好"]}}'
    return [
        b"",
        b"  \n",
        b"null",
        b"[]",
        b'"' + field.encode() + b'"',
        good[:-1].encode(),
        good.encode() + b" trailing",
        f'{{"{field}": ["好"], "{field}": [""]}}'.encode(),
        b"\xef\xbb\xbf" + good.encode(),  # a UTF-8 byte-order mark
        good.encode("utf-16"),
        good.replace("好", "caf\xe9").encode("latin-1"),
        f'{{"{field}": ["\\ud800"]}}'.encode(),
        f'{{"{field}": 1{"0" * 4400}}}'.encode(),  # more digits than Python reads
        f'{{"{field}": {"[" * 3000}{"]" * 3000}}}'.encode(),
        f'{{"{field}": NaN, "top_k": Infinity}}'.encode(),
        good.encode() + b" " * LIMIT,
    ]


def bodies(valid: st.SearchStrategy[dict], fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[bytes]:
    """Mostly objects with the endpoint's fields (`valid`: ones that should be answered; else each field
    anything, or missing, with an unknown one beside), else any JSON, hand-built bodies and random bytes."""
    first, *others = fields
    rest = {name: fields[name] for name in others}
    return st.one_of(
        valid.map(encode),
        valid.map(encode),
        st.fixed_dictionaries(fields).map(encode),
        st.fixed_dictionaries({first: fields[first]}, optional={**rest, "extra": JSON_VALUES}).map(encode),
        st.fixed_dictionaries({}, optional={**fields, "texts": TEXT_LISTS, "text": TEXTS}).map(encode),
        JSON_VALUES.map(encode),
        st.sampled_from(raw_bodies(first)),
        st.binary(max_size=64),
    )


CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 4
    + ["", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)


# ---- the properties -------------------------------------------------------------------------------------


@FUZZ
@given(
    st.sampled_from(SERVES["/embed"]), bodies(st.fixed_dictionaries({"texts": GOOD_LISTS}), TEXT_FIELDS), CONTENT_TYPES
)
@example("mlm", b'{"texts": [""]}', "application/json")
@example("mlm", b'{"texts": [" \\n"]}', "application/json")
@example("ner", b'{"texts": ["\\u200b"]}', "application/json")  # zero tokens: the answer for "" again
@example("clf", b'{"texts": ["ok", "\\u0000\\u0301"]}', "application/json")
@example("mlm", b'{"texts": ["a"], "texts": [""]}', "application/json")  # json.loads kept the last one
@example("mlm", b'{"texts": ["a"], "\\udc80": 1}', "application/json")  # echoed in a message: not UTF-8
def test_embed(clients, folder, body, content_type):
    check(send(clients[folder], "POST", "/embed", body, content_type), "/embed", body)


@FUZZ
@given(st.sampled_from(SERVES["/classify"]), bodies(PAIRED, {"texts": TEXT_LISTS, "pairs": TEXT_LISTS}))
@example("clf", b'{"texts": [""]}')
@example("clf", b'{"texts": ["a"], "pairs": [""]}')
@example("reg", b'{"texts": ["a", "b"], "pairs": ["c", "\\ufeff"]}')
def test_classify(clients, folder, body):
    check(send(clients[folder], "POST", "/classify", body), "/classify", body)


@FUZZ
@given(st.sampled_from(SERVES["/tag"]), bodies(st.fixed_dictionaries({"texts": GOOD_LISTS}), TEXT_FIELDS))
@example("ner", b'{"texts": [""]}')
@example("crf", b'{"texts": ["\\t"]}')
def test_tag(clients, folder, body):
    check(send(clients[folder], "POST", "/tag", body), "/tag", body)


@FUZZ
@given(bodies(MASK_FIELDS, {"text": MASKED | TEXTS | JSON_VALUES, "top_k": TOP_K}))
@example(b'{"text": ""}')
@example(b'{"text": "\\ud800[MASK]"}')
@example(b'{"text": "[MASK]' + "好".encode() * 100 + b'[MASK]"}')  # the answer had one list, not two
@example(b'{"text": "' + b"[MASK]" * 63 + b'"}')
@example(b'{"text": "the [MASK]", "top_k": 1' + b"0" * 4400 + b"}")
@example(b'{"text": "the [MASK]", "top_k": 2.0}')
@example(b'{"text": "the [MASK]", "top_k": 1e309}')
def test_fill_mask(clients, body):
    check(send(clients["mlm"], "POST", "/fill-mask", body), "/fill-mask", body)


PATHS = [*SERVES, "/health", "/ready", "/", "/embed/", "/EMBED", "/nowhere", "/embed?texts=a", "/%ff", "/x" * 3000]


@FUZZ
@given(
    st.sampled_from(list(LABELS) + ["mlm", "reg"]),
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    st.sampled_from(PATHS),
    st.sampled_from([b"", b'{"texts": ["a"]}', b'{"text": "a [MASK]"}', b"\xff"]) | st.binary(max_size=16),
)
def test_every_method_on_every_path(clients, folder, method, path, body):
    response = send(clients[folder], method, path, body)
    status = response.status_code
    assert status < 500, (method, path, response.text[:300])
    if method == "HEAD":  # no body to check
        return
    if status >= 400:
        assert isinstance(response.json().get("error"), str), response.text[:300]
    elif path == "/health":
        assert response.json() == {"status": "ok"}
    elif path == "/ready":
        assert response.json()["ready"] is True


def test_a_text_with_no_tokens_fails_alone_in_a_batch(clients):
    """The tokens are counted in the model thread over a whole batch: the request with nothing to read gets
    its 400, naming the index in its own request, and the requests batched with it their answers."""
    model = clients["clf"].app.state.server.model
    app = create_app(model, ServeConfig(batch_wait_ms=200))
    bodies = [{"texts": ["好"]}, {"texts": ["我们", "\u200b"]}, {"texts": ["差"], "pairs": ["好"]}]

    async def together():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                return await asyncio.gather(*(client.post("/classify", json=b) for b in bodies))

    good, bad, good2 = asyncio.run(together())
    assert good.status_code == good2.status_code == 200
    assert bad.status_code == 400 and "'texts'[1] has nothing the tokenizer reads" in bad.json()["error"]
    batcher = app.state.server.batchers["/classify"]
    assert batcher.largest == 4 and batcher.calls == 4  # one batch of all four texts, then each request alone


def test_a_content_length_past_any_number_is_a_413(clients):
    """A Content-Length of thousands of digits: Python will not read it as a number (it was a 500)."""
    for declared in ("9" * 5000, "99999999999999999999999"):
        r = clients["mlm"].post("/embed", content=b'{"texts": ["a"]}', headers={"content-length": declared})
        assert r.status_code == 413 and "--max-request-bytes" in r.json()["error"], r.text


# ---- the requests that were fixed -----------------------------------------------------------------------

EMPTY = "an empty or non-text string"
SHAPE = "an HTTP body of the wrong shape"
LENGTH = "a text the model cannot read whole"
CASES = [  # (class of case, what the user did, the request, what it gets: "status: part of the error")
    (EMPTY, "embed an empty text", 'POST /embed {"texts": [""]}', "400: 'texts'[0] is empty"),
    (EMPTY, "embed a text of whitespace", 'POST /embed {"texts": [" \\n\\t"]}', "400: 'texts'[0] is empty"),
    (
        EMPTY,
        "embed a text of only zero-width characters",
        'POST /embed {"texts": ["\\u200b\\ufeff"]}',
        "400: 'texts'[0] has nothing the tokenizer reads",
    ),
    (EMPTY, "classify an empty text", 'POST /classify {"texts": [""]}', "400: 'texts'[0] is empty"),
    (
        EMPTY,
        "classify with an empty second text",
        'POST /classify {"texts": ["好", "差"], "pairs": ["好", ""]}',
        "400: 'pairs'[1] is empty",
    ),
    (
        EMPTY,
        "classify with a second text of control characters",
        'POST /classify {"texts": ["好"], "pairs": ["\\u0000\\u0007"]}',
        "400: 'pairs'[0] has nothing the tokenizer reads",
    ),
    (EMPTY, "tag an empty text", 'POST /tag {"texts": ["我们", ""]}', "400: 'texts'[1] is empty"),
    (
        EMPTY,
        "tag a text of only a combining accent",
        'POST /tag {"texts": ["\\u0301"]}',
        "400: 'texts'[0] has nothing the tokenizer reads",
    ),
    (EMPTY, "fill-mask an empty text", 'POST /fill-mask {"text": ""}', "400: 'text' is empty"),
    (
        EMPTY,
        "fill-mask a text with a lone surrogate",
        'POST /fill-mask {"text": "\\ud800[MASK]"}',
        "400: 'text' has a lone surrogate",
    ),
    (
        SHAPE,
        "a field given twice",
        'POST /embed {"texts": ["好"], "texts": [""]}',
        "400: field 'texts' is given twice",
    ),
    (
        SHAPE,
        "an unknown field named with a lone surrogate",
        'POST /embed {"texts": ["好"], "\\udc80": 1}',
        "400: unknown field '\\udc80'",
    ),
    (
        SHAPE,
        "a number of thousands of digits",
        'POST /fill-mask {"text": "好[MASK]", "top_k": 1' + "0" * 4400 + "}",
        "400: the body has a number of thousands of digits",
    ),
    (SHAPE, "an empty body", "POST /embed", "400: the body is empty"),
    (
        LENGTH,
        "fill-mask with a [MASK] past the model's length",
        'POST /fill-mask {"text": "[MASK]' + "好" * 100 + '[MASK]"}',
        "400: 'text': 2 [MASK]s, of which only the first 1 are within the model's limit of 64 tokens",
    ),
    (
        LENGTH,
        "fill-mask with more [MASK]s than the model's length",
        'POST /fill-mask {"text": "' + "[MASK]" * 63 + '"}',
        "400: 'text': 63 [MASK]s, of which only the first 62",
    ),
]
FOLDER = {"/embed": "mlm", "/classify": "clf", "/tag": "ner", "/fill-mask": "mlm"}


@pytest.mark.parametrize("kind, name, request_line, expected", CASES, ids=[c[1] for c in CASES])
def test_case(clients, kind, name, request_line, expected):
    method, path, *rest = request_line.split(" ", 2)
    body = rest[0].encode() if rest else b""
    response = send(clients[FOLDER[path]], method, path, body)
    status, message = expected.split(": ", 1)
    assert response.status_code == int(status), response.text[:300]
    assert message in response.json()["error"], response.json()
