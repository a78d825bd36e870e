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
          Without int8 dot products (AVX2 alone) the weights are uint8: AVX2 multiplies u8 by s8 in pairs summed
          into int16, which saturates (worst cosine 0.893 on an AVX2 EPYC), while u8 x u8 is widened to int16
          first. On that machine: u8 weights 0.997 on the tests' texts, 7-bit s8 (`reduce_range`) 0.989 and 5%
          faster; the class's margin was kept.

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
from collections.abc import Callable
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
class GraphSession:
    """An exported graph opened by an engine: (input_ids, attention_mask) (B, T) int64 -> (B, D) float32
    sentence vectors. `onnxruntime` here; `openvino_backend` opens the same graph in OpenVINO."""

    engine: str  # "onnxruntime" or "openvino": named in messages
    precision: str  # "fp32" or "int8" (onnxruntime); "fp32", "bf16" or "int8" (openvino)
    run: Callable[[np.ndarray, np.ndarray], np.ndarray]
    check: str = ""  # how it was checked, in words: shown by the CLI
    batch_tokens: int = BATCH_TOKENS  # padded tokens a batch at most (or one text of max_seq_length)
    int8_matmuls: int = 0  # matrix multiplies quantised


OnnxSentenceSession = GraphSession  # the name the onnxruntime-only backend had


@dataclass
class OnnxEmbedder(Embedder):
    """An Embedder whose encoder runs as the exported graph in another engine (onnxruntime or OpenVINO):
    sentence vectors of the last layer, in `session`'s precision with the folder's pooling. Make one with
    `onnx_embedder` or `openvino_backend.openvino_embedder`."""

    session: GraphSession | None = None

    def _encoder_for(self, precision: str):
        if precision != self.session.precision:
            raise BertkitError(
                f"this {self.session.engine} embedder runs {self.session.precision}, not {precision}; make another "
                f"for {precision}"
            )
        return self.session

    def _encode_chunk(self, session, texts, batch_tokens, pooling, normalize, mix, output, precision) -> np.ndarray:
        if output != "sentence" or mix is not None:
            raise BertkitError(
                f"the {session.engine} backend gives sentence vectors of the last layer; token vectors and layer "
                "mixes need the torch backend"
            )
        if (pooling, normalize) != (self.pooling, self.normalize):
            raise BertkitError(
                f"this {session.engine} graph pools {self.pooling} (normalize={self.normalize}); load the folder "
                f"with pooling={pooling!r}, normalize={normalize} and make another embedder from that"
            )
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dim), np.float32)
        budget = min(batch_tokens, max(session.batch_tokens, self.max_seq_length))  # engines want small batches
        for batch in length_batches([len(x) for x in ids], budget):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.tokenizer.pad_token_id)
            out[batch] = session.run(input_ids.numpy(), attention_mask.numpy())
        return out


def graph_embedder(embedder: Embedder, session: GraphSession) -> OnnxEmbedder:
    """`embedder`'s settings (weights, tokenizer, pooling) with its encoder run by `session`."""
    settings = {f.name: getattr(embedder, f.name) for f in fields(Embedder) if f.init and not f.name.startswith("_")}
    return OnnxEmbedder(**settings, session=session)


def traced_graph(embedder: Embedder, path: Path, smoothed: dict | None = None) -> None:
    """Write `embedder` (encoder, pooling, Dense, normalisation) as an ONNX graph at `path`; with `smoothed`
    (input maxima per projection), a SmoothQuant-smoothed copy of the encoder (for int8)."""
    from bertkit.use.export import SentenceEmbedding, _trace
    from bertkit.use.int8 import smooth

    source = embedder
    if smoothed is not None:  # the same settings with a smoothed copy of the encoder
        source = copy.copy(embedder)
        source.encoder = smooth(embedder.encoder, smoothed, INT8_ALPHA).eval()
    module = SentenceEmbedding(source).eval()
    _trace(
        module, padded(embedder, ["Hello world, a longer first text.", "Hi"]), path, INPUTS, ["sentence_embedding"], 17
    )


INPUTS = ["input_ids", "attention_mask"]


def padded(embedder: Embedder, texts: list[str]) -> dict[str, torch.Tensor]:
    ids, mask = pad_batch(embedder.tokenize(texts), embedder.tokenizer.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask}


def check_exact(embedder: Embedder, run: Callable, engine: str) -> str:
    """The largest difference between `run`'s vectors and PyTorch's on the export check's batches; a
    BertkitError past `export.TOLERANCE`. Returns the check in words."""
    from bertkit.use.export import CHECK_BATCHES, CHECK_TEXTS, TOLERANCE

    worst = 0.0
    for idx in CHECK_BATCHES:
        texts = [CHECK_TEXTS[i] for i in idx]
        got = run(**{k: v.numpy() for k, v in padded(embedder, texts).items()})
        worst = max(worst, float(np.abs(got - embedder.encode(texts)).max()))
    if not worst <= TOLERANCE:
        raise BertkitError(f"{engine} differs from PyTorch by {worst:.2e} (more than {TOLERANCE:.0e})")
    return f"max abs diff to PyTorch {worst:.1e}"


def check_approximate(embedder: Embedder, run: Callable, engine: str, precision: str, minimum: float) -> str:
    """The worst cosine between `run`'s vectors and PyTorch fp32's over the check and calibration texts; a
    BertkitError below `minimum`. Returns the check in words."""
    from bertkit.use.export import CHECK_TEXTS
    from bertkit.use.int8 import CALIBRATION_TEXTS

    texts = CHECK_TEXTS + CALIBRATION_TEXTS
    reference = embedder.encode(texts)
    got = np.concatenate(
        [run(**{k: v.numpy() for k, v in padded(embedder, texts[i : i + 4]).items()}) for i in range(0, len(texts), 4)]
    )
    worst = float(cosines(got, reference).min())
    if worst < minimum:
        raise BertkitError(
            f"{engine} {precision} vectors reach a worst cosine of {worst:.5f} to fp32 on the check texts (below "
            f"{minimum}); use --precision fp32 for this model"
        )
    return f"worst cosine to fp32 {worst:.5f} on {len(texts)} texts"


def onnx_embedder(embedder: Embedder, precision: str = "fp32") -> OnnxEmbedder:
    """`embedder` (its weights, tokenizer, pooling) with its encoder run by onnxruntime in `precision` ("fp32"
    or "int8"): the graph is exported, quantised for int8 and checked here (`build_session`)."""
    if embedder.device.type != "cpu":
        raise BertkitError("the onnxruntime backend runs on the CPU; on a GPU use the torch backend")
    return graph_embedder(embedder, build_session(embedder, precision))


def build_session(embedder: Embedder, precision: str) -> GraphSession:
    """Export `embedder` (with its pooling and normalisation) to ONNX, quantise it for int8, check it against
    PyTorch, and open it in onnxruntime. A failed check is a BertkitError naming the figure."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BertkitError("--backend onnxruntime needs the onnxruntime package: pip install onnxruntime") from None

    if precision not in ("fp32", "int8"):
        raise BertkitError(
            f"--backend onnxruntime runs fp32 or int8, not {precision}: onnxruntime's CPU provider has no bf16 "
            "matrix multiplies (the torch and openvino backends run bf16)"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    nodes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bertkit-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        maxima = None
        if precision == "int8":
            maxima = {k: v for k, v in embedder._input_maxima().items() if k.rsplit(".", 1)[-1] != "down"}
        traced_graph(embedder, path, maxima)
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            nodes = int8_nodes(path, embedder.encoder.config.hidden_size)
            quantized = Path(tmp) / "model.int8.onnx"
            root = logging.getLogger()  # the quantiser logs advice to the root logger that a user cannot act on
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                quantize_dynamic(  # u8 weights without int8 dot products: AVX2's u8 x s8 pairs saturate int16
                    path,
                    quantized,
                    weight_type=QuantType.QInt8 if native_int8() else QuantType.QUInt8,
                    per_channel=True,
                    nodes_to_quantize=nodes,
                )
            finally:
                root.setLevel(level)
            path = quantized
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    if precision == "fp32":
        return GraphSession("onnxruntime", "fp32", run, check_exact(embedder, run, "onnxruntime"))
    check = check_approximate(embedder, run, "onnxruntime", "int8", INT8_MIN_COSINE)
    return GraphSession(
        "onnxruntime", "int8", run, f"{len(nodes)} matrix multiplies int8, {check}", int8_matmuls=len(nodes)
    )


def native_int8() -> bool:
    """Whether this CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX): OpenVINO's int8 needs them, and
    without them onnxruntime's int8 weights are unsigned (`build_session`)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


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
