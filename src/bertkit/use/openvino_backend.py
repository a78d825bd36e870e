"""Sentence vectors run by OpenVINO (`embed` / `serve --backend openvino`): the graph the onnxruntime backend
exports (`onnx_backend.traced_graph`: encoder, pooling, Dense, normalisation), compiled by OpenVINO's CPU
plugin and fed by the Embedder's own batches (texts sorted by length, cut by a token budget), so that the
backends differ only in what runs the encoder.

    fp32  OpenVINO's inference precision pinned to f32 (its CPU plugin would otherwise choose bf16 on a CPU
          with AMX); checked against PyTorch: max abs diff <= `export.TOLERANCE` (1e-4).
    bf16  the inference precision hint set to bf16: matrix multiplies in bf16 on a CPU with native bf16
          (AVX-512 BF16 or AMX), the rest as OpenVINO's plugin chooses. Checked: the worst cosine to fp32
          PyTorch over the check texts must be >= `BF16_MIN_COSINE`. Refused on a CPU without native bf16,
          where OpenVINO would emulate it slowly or fall back to f32 without saying so.

Choices:
- The graph goes from the ONNX file straight to `Core.compile_model` (OpenVINO reads ONNX itself): no
  optimum-intel, no IR files on disk. One compiled model per embedder; threads: as many as torch uses, one
  stream, the latency hint (a single caller's batches, one after another).
- No int8 here: OpenVINO quantises through NNCF with calibration data, a second toolchain; onnxruntime's
  int8 backend covers it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bertkit.errors import BertkitError
from bertkit.use.embed import Embedder
from bertkit.use.onnx_backend import (
    GraphSession,
    OnnxEmbedder,
    check_approximate,
    check_exact,
    graph_embedder,
    traced_graph,
)

BF16_MIN_COSINE = 0.99
# padded tokens a batch at most (or one text of max_seq_length); see `onnx_backend.BATCH_TOKENS`
BATCH_TOKENS = 1024


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_embedder(embedder: Embedder, precision: str = "fp32") -> OnnxEmbedder:
    """`embedder` (its weights, tokenizer, pooling) with its encoder run by OpenVINO in `precision` ("fp32" or
    "bf16"): the graph is exported, compiled and checked here."""
    if embedder.device.type != "cpu":
        raise BertkitError("the openvino backend runs on the CPU; on a GPU use the torch backend")
    return graph_embedder(embedder, build_session(embedder, precision))


def build_session(embedder: Embedder, precision: str) -> GraphSession:
    try:
        import openvino as ov
    except ImportError:
        raise BertkitError("--backend openvino needs the openvino package: pip install openvino") from None
    if precision not in ("fp32", "bf16"):
        raise BertkitError(f"--backend openvino runs fp32 or bf16, not {precision} (onnxruntime's backend runs int8)")
    if precision == "bf16" and not native_bf16():
        raise BertkitError(
            "this CPU has no native bf16 (AVX-512 BF16 or AMX): OpenVINO would emulate it; use --precision fp32"
        )
    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    with tempfile.TemporaryDirectory(prefix="bertkit-openvino-") as tmp:
        path = Path(tmp) / "model.onnx"
        traced_graph(embedder, path)
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        result = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(result[output], dtype=np.float32)  # a copy: the request reuses its buffer

    if precision == "fp32":
        check = check_exact(embedder, run, "openvino")
    else:
        check = check_approximate(embedder, run, "openvino", "bf16", BF16_MIN_COSINE)
    return GraphSession("openvino", precision, run, check, batch_tokens=BATCH_TOKENS)
