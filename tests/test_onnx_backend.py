"""`--backend onnxruntime`: the exported graph run by onnxruntime, fp32 equal to PyTorch and int8 within the
promised cosine, the same batching; what it cannot do is a clear error; `serve` uses it too."""

import numpy as np
import pytest
from helpers import ENGINE_TEXTS

from bertkit.cli.table import main
from bertkit.errors import BertkitError
from bertkit.use.embed import load_embedder
from bertkit.use.onnx_backend import INT8_MIN_COSINE, cosines, onnx_embedder

pytest.importorskip("onnxruntime")

TEXTS = ENGINE_TEXTS


@pytest.fixture(scope="module")
def embedder(minilm_path):
    return load_embedder(minilm_path)


@pytest.fixture(scope="module")
def ort_fp32(embedder):
    return onnx_embedder(embedder, "fp32")


@pytest.fixture(scope="module")
def ort_int8(embedder):
    return onnx_embedder(embedder, "int8")


def test_fp32_gives_pytorch_vectors_in_input_order(embedder, ort_fp32):
    torch_vectors = embedder.encode(TEXTS)
    ort_vectors = ort_fp32.encode(TEXTS, batch_tokens=512)  # several batches
    assert ort_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    assert np.abs(ort_vectors - torch_vectors).max() < 1e-4
    session = ort_fp32.session
    assert session.precision == "fp32" and "max abs diff" in session.check and session.int8_matmuls == 0
    streamed = np.concatenate(list(ort_fp32.encode_iter(TEXTS, chunk_size=5)))  # the Embedder's streaming
    assert np.abs(streamed - torch_vectors).max() < 1e-4


def test_the_graph_follows_the_folders_pooling(minilm_path):
    cls = onnx_embedder(load_embedder(minilm_path, pooling="cls", normalize=False))
    torch_cls = load_embedder(minilm_path).encode(TEXTS[:4], pooling="cls", normalize=False)
    assert np.abs(cls.encode(TEXTS[:4]) - torch_cls).max() < 1e-4


def test_int8_quantises_every_projection_but_ffn_down_and_stays_close(embedder, ort_int8):
    from bertkit.finetune.tasks import sentiment_task

    layers = embedder.encoder.config.num_hidden_layers
    assert ort_int8.session.int8_matmuls == 5 * layers  # Q, K, V, attention output, FFN up; FFN down stays fp32
    # Texts the calibration never saw: Chinese reviews through this English model have the worst outliers.
    texts = TEXTS + [e.text for e in sentiment_task().test[:100]]
    int8 = ort_int8.encode(texts, precision="int8")
    fp32 = embedder.encode(texts)
    cos = cosines(int8, fp32)
    assert cos.min() >= INT8_MIN_COSINE, cos.min()
    assert np.abs(int8 - fp32).max() > 1e-3  # it did quantise: the fp32 graph is within 1e-4


def test_int8_below_the_promised_cosine_is_refused(embedder, monkeypatch):
    monkeypatch.setattr("bertkit.use.onnx_backend.INT8_MIN_COSINE", 1.0 + 1e-9)  # no int8 model reaches it
    with pytest.raises(BertkitError, match=r"worst cosine of 0\.9\d+ to fp32 .* use --precision fp32"):
        onnx_embedder(embedder, "int8")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(precision="bf16"), "runs fp32, not bf16"),
        (dict(output="token"), "token vectors and layer mixes need the torch backend"),
        (dict(layers=2), "token vectors and layer mixes need the torch backend"),
        (dict(pooling="cls"), "this onnxruntime graph pools mean"),
    ],
)
def test_what_the_onnxruntime_backend_cannot_do_is_an_error(ort_fp32, kwargs, message):
    with pytest.raises(BertkitError, match=message):
        ort_fp32.encode(["a text"], **kwargs)


def test_no_bf16_graph(embedder):
    with pytest.raises(BertkitError, match="no bf16"):
        onnx_embedder(embedder, "bf16")


def test_embed_cli_with_onnxruntime(minilm_path, tmp_path, capsys):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS[:6]) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    args = ["embed", str(minilm_path), "--input", str(src), "--output", str(out), "--backend", "onnxruntime"]
    assert main(args) == 0
    assert "onnxruntime fp32: max abs diff to PyTorch" in capsys.readouterr().err
    assert np.abs(np.load(out) - load_embedder(minilm_path).encode(TEXTS[:6])).max() < 1e-4
    out.write_bytes(b"a good file")
    assert main([*args, "--layers", "2"]) == 2  # a layer mix: torch only; the error leaves the old output alone
    assert "drop --tokens / --layers" in capsys.readouterr().err and out.read_bytes() == b"a good file"


def test_serve_embeds_with_the_configured_backend(minilm_path, monkeypatch):
    from starlette.testclient import TestClient

    from bertkit.use.serve import ServeConfig, app_from_env, create_app, load_model

    model = load_model(minilm_path, precision="int8", backend="onnxruntime")
    assert model.embedder.session.precision == "int8"  # built and checked at load
    with TestClient(create_app(model, ServeConfig(precision="int8", backend="onnxruntime"))) as client:
        r = client.post("/embed", json={"texts": TEXTS[:3]})
    assert r.status_code == 200, r.text
    expected = model.embedder.encode(TEXTS[:3], precision="int8")
    assert np.abs(np.array(r.json()["vectors"], dtype=np.float32) - expected).max() < 1e-5
    monkeypatch.setenv("BERTKIT_SERVE_MODEL", str(minilm_path))
    monkeypatch.setenv("BERTKIT_SERVE_BACKEND", "onnxruntime")
    assert app_from_env().state.server.config == ServeConfig(backend="onnxruntime")
    monkeypatch.setenv("BERTKIT_SERVE_BACKEND", "tensorrt")
    with pytest.raises(BertkitError, match="--backend tensorrt: use one of torch, onnxruntime"):
        app_from_env()


@pytest.mark.parametrize("dots", [True, False])
def test_int8_weights_are_unsigned_without_int8_dot_products(embedder, monkeypatch, dots):
    # AVX2 multiplies u8 by s8 in pairs summed into int16, which saturates: s8 weights gave a worst cosine of
    # 0.893 on an AVX2 EPYC, u8 0.997. With VNNI / AMX there is no saturation and the weights stay s8.
    import onnxruntime.quantization as quantization

    seen = {}
    real = quantization.quantize_dynamic

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(quantization, "quantize_dynamic", spy)
    monkeypatch.setattr("bertkit.use.onnx_backend.native_int8", lambda: dots)
    try:
        int8 = onnx_embedder(embedder, "int8")
    except BertkitError:
        assert dots, "u8 weights must pass the check on any CPU"  # s8 on AVX2 may fail it: refused
    else:
        assert cosines(int8.encode(ENGINE_TEXTS, precision="int8"), embedder.encode(ENGINE_TEXTS)).min() >= 0.99
    expected = quantization.QuantType.QInt8 if dots else quantization.QuantType.QUInt8
    assert seen["weight_type"] == expected and not seen.get("reduce_range")
