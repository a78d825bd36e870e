"""`--backend openvino` and `--precision auto`: the exported graph run by OpenVINO, fp32 equal to PyTorch and
bf16 within the promised cosine; the rule that picks the fastest path, and what it says; `serve` uses both."""

import importlib.util

import numpy as np
import pytest
from helpers import ENGINE_TEXTS

from bertkit.cli.table import main
from bertkit.errors import BertkitError
from bertkit.training import bf16_supported
from bertkit.use.embed import load_embedder
from bertkit.use.onnx_backend import cosines
from bertkit.use.paths import Choice, choose, fastest_embedder

pytest.importorskip("openvino")
from bertkit.use.openvino_backend import (  # noqa: E402
    BF16_MIN_COSINE,
    INT8_MIN_COSINE,
    native_bf16,
    native_int8,
    openvino_embedder,
)

TEXTS = ENGINE_TEXTS


@pytest.fixture(scope="module")
def embedder(minilm_path):
    return load_embedder(minilm_path)


@pytest.fixture(scope="module")
def ov_fp32(embedder):
    return openvino_embedder(embedder, "fp32")


def test_fp32_gives_pytorch_vectors_in_input_order(embedder, ov_fp32):
    torch_vectors = embedder.encode(TEXTS)
    ov_vectors = ov_fp32.encode(TEXTS, batch_tokens=512)  # several batches of different shapes
    assert ov_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    assert np.abs(ov_vectors - torch_vectors).max() < 1e-4
    assert ov_fp32.session.engine == "openvino" and "max abs diff" in ov_fp32.session.check
    again = ov_fp32.encode(TEXTS[::-1])[::-1]  # the request's output buffer is reused: every row is a copy
    assert np.abs(again - torch_vectors).max() < 1e-4


def test_the_graph_follows_the_folders_pooling(minilm_path):
    cls = openvino_embedder(load_embedder(minilm_path, pooling="cls", normalize=False))
    torch_cls = load_embedder(minilm_path).encode(TEXTS[:4], pooling="cls", normalize=False)
    assert np.abs(cls.encode(TEXTS[:4]) - torch_cls).max() < 1e-4


@pytest.mark.skipif(not bf16_supported(__import__("torch").device("cpu")), reason="needs native bf16")
def test_bf16_stays_within_the_promised_cosine(embedder):
    from bertkit.finetune.tasks import sentiment_task

    assert native_bf16()
    ov = openvino_embedder(embedder, "bf16")
    texts = TEXTS + [e.text for e in sentiment_task().test[:100]]
    bf16, fp32 = ov.encode(texts, precision="bf16"), embedder.encode(texts)
    assert cosines(bf16, fp32).min() >= BF16_MIN_COSINE
    assert np.abs(bf16 - fp32).max() > 1e-4  # it did compute in bf16: the fp32 graph is within 1e-6


def test_bf16_without_native_bf16_is_refused(embedder, monkeypatch):
    monkeypatch.setattr("bertkit.use.openvino_backend.native_bf16", lambda: False)
    with pytest.raises(BertkitError, match="no native bf16.*use --precision fp32"):
        openvino_embedder(embedder, "bf16")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(precision="bf16"), "this openvino embedder runs fp32, not bf16"),
        (dict(output="token"), "token vectors and layer mixes need the torch backend"),
        (dict(pooling="cls"), "this openvino graph pools mean"),
    ],
)
def test_what_the_openvino_backend_cannot_do_is_an_error(ov_fp32, kwargs, message):
    with pytest.raises(BertkitError, match=message):
        ov_fp32.encode(["a text"], **kwargs)


@pytest.mark.skipif(not (native_int8() and importlib.util.find_spec("nncf")), reason="needs int8 dot products and nncf")
def test_int8_stays_within_its_cosine_and_computes_in_int8(embedder, ov_fp32):
    texts = ENGINE_TEXTS
    fp32 = ov_fp32.encode(texts)
    ov = openvino_embedder(embedder, "int8")
    assert (ov.session.engine, ov.session.precision) == ("openvino", "int8")
    assert "worst cosine to fp32" in ov.session.check
    int8 = ov.encode(texts, precision="int8")
    assert cosines(int8, fp32).min() >= INT8_MIN_COSINE
    assert np.abs(int8 - fp32).max() > 1e-3  # it did quantise: the fp32 graph is within 1e-6


def test_int8_without_int8_dot_products_is_refused(embedder, monkeypatch):
    monkeypatch.setattr("bertkit.use.openvino_backend.native_int8", lambda: False)
    with pytest.raises(BertkitError, match="no int8 dot products.*use --precision fp32"):
        openvino_embedder(embedder, "int8")


def test_other_precisions_are_refused(embedder):
    with pytest.raises(BertkitError, match="runs fp32, bf16 or int8, not fp16"):
        openvino_embedder(embedder, "fp16")


# ---- --precision auto ------------------------------------------------------------------------------------


def everything(backend: str) -> bool:
    return True


@pytest.mark.parametrize(
    "precision, backend, native, have, expected",
    [
        ("auto", None, True, everything, ("openvino", "bf16")),
        ("auto", None, True, lambda b: b != "openvino", ("torch", "bf16")),
        ("auto", None, False, everything, ("onnxruntime", "int8")),
        ("auto-exact", None, True, everything, ("torch", "fp32")),
        ("auto-exact", None, False, everything, ("openvino", "fp32")),  # AVX2: the engines' fp32 is faster
        ("auto-exact", None, False, lambda b: b == "torch", ("torch", "fp32")),
        ("auto-exact", "openvino", False, everything, ("openvino", "fp32")),
        ("auto-exact", "onnxruntime", True, everything, ("onnxruntime", "fp32")),
        ("auto", None, False, lambda b: b == "torch", ("torch", "fp32")),
        ("auto", "openvino", True, everything, ("openvino", "bf16")),
        ("auto", "openvino", False, everything, ("openvino", "fp32")),
        ("auto", "torch", True, everything, ("torch", "bf16")),
        ("auto", "torch", False, everything, ("torch", "fp32")),
        ("auto", "onnxruntime", True, everything, ("onnxruntime", "int8")),
        ("bf16", None, True, everything, ("torch", "bf16")),  # a precision named: torch unless told
        ("fp32", "openvino", True, everything, ("openvino", "fp32")),
        # with int8 dot products (VNNI / AMX): openvino int8 first, when nncf is there to compress the weights
        ("auto", None, "int8", everything, ("openvino", "int8")),
        ("auto", None, "int8", lambda b: b != "nncf", ("openvino", "bf16")),
        ("auto", "torch", "int8", everything, ("torch", "bf16")),
        ("auto-exact", None, "int8", everything, ("torch", "fp32")),
    ],
)
def test_auto_takes_the_first_path_this_machine_can_run(precision, backend, native, have, expected):
    choice = choose(precision, backend, bool(native), have, native_int8=native == "int8")
    assert (choice.backend, choice.precision) == expected
    if precision.startswith("auto"):
        assert "fastest path" in choice.why and ("exact" in choice.why) == (precision == "auto-exact")
    if have is not everything and precision.startswith("auto") and backend is None:
        assert "not installed" in choice.why


def test_auto_passes_over_a_path_whose_vectors_fail_their_check(embedder, monkeypatch):
    monkeypatch.setattr("bertkit.use.openvino_backend.native_int8", lambda: True)
    monkeypatch.setattr("bertkit.training.bf16_supported", lambda device: True)
    built = []

    def build(emb, choice):
        built.append((choice.backend, choice.precision))
        if choice.backend == "openvino":
            raise BertkitError(f"openvino {choice.precision} vectors reach a worst cosine of 0.9 to fp32")
        return emb

    monkeypatch.setattr("bertkit.use.paths.build", build)
    _, choice = fastest_embedder(embedder, "auto")
    assert built == [("openvino", "int8"), ("openvino", "bf16"), ("torch", "bf16")]
    assert (choice.backend, choice.precision) == ("torch", "bf16")
    assert "openvino int8 refused: openvino int8 vectors reach a worst cosine of 0.9" in choice.why
    built.clear()
    with pytest.raises(BertkitError, match="openvino int8 vectors reach"):  # a precision named: no second try
        fastest_embedder(embedder, "int8", "openvino")
    with pytest.raises(BertkitError, match="openvino fp32 vectors reach"):  # nothing left on that engine
        fastest_embedder(embedder, "auto-exact", "openvino")


def test_auto_on_an_engine_that_is_not_installed_is_an_error():
    with pytest.raises(BertkitError, match="--backend openvino is not installed: pip install openvino"):
        choose("auto", "openvino", True, lambda b: b == "torch")


def test_auto_exact_gives_fp32_vectors_and_auto_stays_within_its_cosine(embedder):
    exact, choice = fastest_embedder(embedder, "auto-exact")
    expected = choose("auto-exact", None, native_bf16())  # the rule, as tested above
    assert choice == Choice(expected.backend, "fp32", choice.why)
    assert np.abs(exact.encode(TEXTS) - embedder.encode(TEXTS)).max() < 1e-4
    assert (exact is embedder) == (choice.backend == "torch")  # nothing to build for torch
    fast, choice = fastest_embedder(embedder, "auto")
    expected = choose("auto", None, native_bf16(), native_int8=native_int8())  # the rule, as tested above
    assert (choice.backend, choice.precision) == (expected.backend, expected.precision)
    assert cosines(fast.encode(TEXTS, precision=choice.precision), embedder.encode(TEXTS)).min() >= 0.99


def test_embed_cli_says_what_auto_chose(minilm_path, tmp_path, capsys):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS[:6]) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    args = ["embed", str(minilm_path), "--input", str(src), "--output", str(out)]
    assert main([*args, "--precision", "auto-exact", "--backend", "openvino"]) == 0
    err = capsys.readouterr().err
    assert "--precision auto-exact: openvino fp32 (" in err and "openvino fp32: max abs diff to PyTorch" in err
    assert np.abs(np.load(out) - load_embedder(minilm_path).encode(TEXTS[:6])).max() < 1e-4
    assert main([*args, "--backend", "openvino", "--tokens", "--output", str(tmp_path / "t.jsonl")]) == 2
    assert "--backend openvino gives sentence vectors of the last layer" in capsys.readouterr().err
    assert main([*args, "--precision", "auto", "--tokens", "--output", str(tmp_path / "t.jsonl")]) == 0
    assert "--precision auto: torch " in capsys.readouterr().err  # token vectors: the torch backend's alone


def test_serve_embeds_with_openvino_and_says_what_auto_chose(minilm_path):
    from starlette.testclient import TestClient

    from bertkit.use.serve import ServeConfig, create_app, load_model

    model = load_model(minilm_path, precision="auto-exact", backend="openvino")
    assert (model.backend, model.precision) == ("openvino", "fp32")
    with TestClient(create_app(model, ServeConfig(precision="auto-exact", backend="openvino"))) as client:
        r = client.post("/embed", json={"texts": TEXTS[:3]})
    assert r.status_code == 200, r.text
    expected = load_embedder(minilm_path).encode(TEXTS[:3])
    assert np.abs(np.array(r.json()["vectors"], dtype=np.float32) - expected).max() < 1e-4
