"""Sentence vectors run by ONNX Runtime (`embed` / `serve --backend onnxruntime`): `onnx_embedder(embedder,
precision)` is an `Embedder` whose encoder is the graph `bertkit export` writes, built in memory for the
embedder's pooling and fed by the Embedder's own batches (texts sorted by length, cut by a token budget), so
that the two backends differ only in what runs the encoder.

    fp32  the exported graph; checked against PyTorch (max abs diff <= 1e-4, `export.TOLERANCE`) first.
    int8  Q, K, V, the attention output and the FFN's first linear layer smoothed as SmoothQuant does
          (`int8.smooth`, alpha 0.7, calibrated once on `CALIBRATION_TEXTS`), then quantised by onnxruntime's
          dynamic quantiser: int8 weights per output channel, uint8 activations scaled per batch. The FFN's
          second layer stays fp32 (its input, after GELU, has tails that one scale per batch cannot hold).
          Checked first: the worst cosine to fp32 PyTorch over the check texts must be >= `INT8_MIN_COSINE`.

Choices:
- Measured on all-MiniLM-L6-v2, 300 mixed texts (English, Chinese, mixed), against the fp32 graph: every
  MatMul quantised, unsmoothed, gives a worst cosine of 0.974; the smoothed projections above, FFN-down
  fp32, 0.996. That is why the quantiser is told which nodes to take (`int8_nodes`).
- One session per OnnxEmbedder, for its precision, pooling and normalisation (a call asking for others is
  an error); the graph's files live in a temporary folder only while the session is made. Threads: as
  many as torch uses; every graph optimisation on (onnxruntime fuses LayerNorm, GELU and the bias adds).
- No bf16: onnxruntime's CPU provider has no bf16 matrix multiplies. Where the CPU has them, the torch
  backend in bf16 is faster than either of these (docs/performance.md).
- The graph computes on padded batches (onnxruntime has no unpadding); length-sorted batches pad little, and
  they are cut smaller than the torch backend's (`BATCH_TOKENS`).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from bertkit.errors import BertkitError
from bertkit.use.embed import Embedder, length_batches, pad_batch

INT8_MIN_COSINE = 0.99
INT8_ALPHA = 0.7  # SmoothQuant's migration strength; see `int8.quantize_int8` for the measured choice
INT8_PROJECTIONS = ("/attn/query/", "/attn/key/", "/attn/value/", "/attn/out/", "/ffn/up/")
# onnxruntime computes padded batches and wants them small: at most this many padded tokens a batch (or one
# text of max_seq_length). Measured, all-MiniLM-L6-v2 fp32, 3-16 / 65-128 tokens: 4,096 gave 618 / 81 texts/s,
# 1,024 746 / 98, 512 781 / 100, 256 692 / 92 (plain onnxruntime, batches of 32: 746 / 82).
BATCH_TOKENS = 1024


@dataclass
class OnnxSentenceSession:
    """An onnxruntime session: (input_ids, attention_mask) (B, T) int64 -> (B, D) float32 sentence vectors."""

    session: object  # onnxruntime.InferenceSession
    precision: str  # "fp32" or "int8"
    check: str  # how it was checked, in words: shown by the CLI
    int8_matmuls: int = 0  # matrix multiplies quantised

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


@dataclass
class OnnxEmbedder(Embedder):
    """An Embedder whose encoder runs in onnxruntime: sentence vectors of the last layer, in `session`'s
    precision with the folder's pooling. Make one with `onnx_embedder`."""

    session: OnnxSentenceSession | None = None

    def _encoder_for(self, precision: str):
        if precision != self.session.precision:
            raise BertkitError(
                f"this onnxruntime embedder runs {self.session.precision}, not {precision}; make another for "
                f"{precision} (the torch backend runs bf16)"
            )
        return self.session

    def _encode_chunk(self, session, texts, batch_tokens, pooling, normalize, mix, output, precision) -> np.ndarray:
        if output != "sentence" or mix is not None:
            raise BertkitError(
                "the onnxruntime backend gives sentence vectors of the last layer; token vectors and layer "
                "mixes need the torch backend"
            )
        if (pooling, normalize) != (self.pooling, self.normalize):
            raise BertkitError(
                f"this onnxruntime graph pools {self.pooling} (normalize={self.normalize}); load the folder with "
                f"pooling={pooling!r}, normalize={normalize} and make an onnx_embedder from that"
            )
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dim), np.float32)
        budget = min(batch_tokens, max(BATCH_TOKENS, self.max_seq_length))  # onnxruntime wants small batches
        for batch in length_batches([len(x) for x in ids], budget):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.tokenizer.pad_token_id)
            out[batch] = session.run(input_ids.numpy(), attention_mask.numpy())
        return out


def onnx_embedder(embedder: Embedder, precision: str = "fp32") -> OnnxEmbedder:
    """`embedder` (its weights, tokenizer, pooling) with its encoder run by onnxruntime in `precision` ("fp32"
    or "int8"): the graph is exported, quantised for int8 and checked here (`build_session`)."""
    if embedder.device.type != "cpu":
        raise BertkitError("the onnxruntime backend runs on the CPU; on a GPU use the torch backend")
    session = build_session(embedder, precision)
    settings = {f.name: getattr(embedder, f.name) for f in fields(Embedder) if f.init and not f.name.startswith("_")}
    return OnnxEmbedder(**settings, session=session)


def build_session(embedder: Embedder, precision: str) -> OnnxSentenceSession:
    """Export `embedder` (with its pooling and normalisation) to ONNX, quantise it for int8, check it against
    PyTorch, and open it in onnxruntime. A failed check is a BertkitError naming the figure."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BertkitError("--backend onnxruntime needs the onnxruntime package: pip install onnxruntime") from None
    from bertkit.use.export import CHECK_BATCHES, CHECK_TEXTS, TOLERANCE, SentenceEmbedding, _trace, check_onnx
    from bertkit.use.int8 import CALIBRATION_TEXTS, smooth

    if precision not in ("fp32", "int8"):
        raise BertkitError(
            f"--backend onnxruntime runs fp32 or int8, not {precision}: onnxruntime's CPU provider has no bf16 "
            "matrix multiplies (the torch backend runs bf16)"
        )
    source = embedder
    if precision == "int8":  # the same settings with a smoothed copy of the encoder
        maxima = {k: v for k, v in embedder._input_maxima().items() if k.rsplit(".", 1)[-1] != "down"}
        source = copy.copy(embedder)
        source.encoder = smooth(embedder.encoder, maxima, INT8_ALPHA).eval()
    module = SentenceEmbedding(source).eval()

    def batch(texts: list[str]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch(embedder.tokenize(texts), embedder.tokenizer.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask}

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    inputs, outputs = ["input_ids", "attention_mask"], ["sentence_embedding"]
    with tempfile.TemporaryDirectory(prefix="bertkit-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        _trace(module, batch(["Hello world, a longer first text.", "Hi"]), path, inputs, outputs, opset=17)
        if precision == "fp32":
            cases = [
                (
                    f"{len(idx)} texts",
                    batch([CHECK_TEXTS[i] for i in idx]),
                    [embedder.encode([CHECK_TEXTS[i] for i in idx])],
                )
                for idx in CHECK_BATCHES
            ]
            worst = max(d for _, d in check_onnx(path, cases))
            if not worst <= TOLERANCE:
                raise BertkitError(f"onnxruntime differs from PyTorch by {worst:.2e} (more than {TOLERANCE:.0e})")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return OnnxSentenceSession(session, "fp32", f"max abs diff to PyTorch {worst:.1e}")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        nodes = int8_nodes(path, embedder.encoder.config.hidden_size)
        quantized = Path(tmp) / "model.int8.onnx"
        root = logging.getLogger()  # the quantiser logs advice to the root logger that a user cannot act on
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=nodes)
        finally:
            root.setLevel(level)
        session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    result = OnnxSentenceSession(session, "int8", "", len(nodes))
    texts = CHECK_TEXTS + CALIBRATION_TEXTS
    reference = embedder.encode(texts)
    got = np.concatenate(
        [result.run(**{k: v.numpy() for k, v in batch(texts[i : i + 4]).items()}) for i in range(0, len(texts), 4)]
    )
    worst = float(cosines(got, reference).min())
    if worst < INT8_MIN_COSINE:
        raise BertkitError(
            f"onnxruntime int8 vectors reach a worst cosine of {worst:.4f} to fp32 on the check texts (below "
            f"{INT8_MIN_COSINE}); use --precision fp32 for this model"
        )
    result.check = f"{len(nodes)} matrix multiplies int8, worst cosine to fp32 {worst:.4f} on {len(texts)} texts"
    return result


def int8_nodes(path: Path, hidden_size: int) -> list[str]:
    """Names of the MatMul nodes to quantise: the encoder's projections in `INT8_PROJECTIONS` (the exporter
    names nodes by module path, e.g. /encoder/layers.0/attn/query/linear/MatMul) with an H-wide weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {w.name: w for w in graph.initializer}
    found = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and n.input[1] in weights
        and weights[n.input[1]].dims[0] == hidden_size
        and any(p in n.name for p in INT8_PROJECTIONS)
    ]
    if not found:
        raise RuntimeError(f"{path}: no projection MatMul found to quantise; the exporter's node names changed")
    return found


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(min=1e-12)
