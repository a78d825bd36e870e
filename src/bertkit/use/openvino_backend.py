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
    int8  weights in int8 with a zero point per output channel (`nncf.compress_weights`, INT8_ASYM), the
          activations quantised as each batch runs, per group of `INT8_GROUP` values (the CPU plugin's dynamic
          quantisation): matrix multiplies on the CPU's int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX), the
          rest in bf16 where the CPU has it natively, else f32. Checked like bf16 (`INT8_MIN_COSINE`); refused
          without int8 dot products, where the weights would only be unpacked to float again.

Choices:
- The graph goes from the ONNX file straight to `Core.compile_model` (OpenVINO reads ONNX itself): no
  optimum-intel, no IR files on disk. One compiled model per embedder; threads: as many as torch uses, one
  stream, the latency hint (a single caller's batches, one after another).
- int8 is quantised as it runs, not calibrated: NNCF's static quantisation (activation scales fixed from
  calibration texts, SmoothQuant on) was as fast but put the worst cosine to fp32 at 0.86 on the benchmark's
  texts. Group size, all-MiniLM-L6-v2 on the benchmark's texts (AMD EPYC, AVX-512 BF16 and VNNI, 2 threads):
  32 and 64 gave a worst cosine of 0.998, 128 0.997 (5-11% faster than 64 in every length bucket), a whole
  row (384) 0.991. 128 leaves a margin to `INT8_MIN_COSINE`; a model that falls below it is refused, and
  `--precision auto` then takes the next path (`paths.fastest_embedder`). Batches: 1,024 padded tokens was
  the best of 512-4,096 in every bucket, as for bf16.
  NNCF prints a progress bar on stdout (where `embed` writes vectors), so it runs with stdout set aside.
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
    native_int8,
    traced_graph,
)

BF16_MIN_COSINE = 0.99
INT8_MIN_COSINE = 0.99
INT8_GROUP = 128  # values per activation scale in the CPU plugin's dynamic quantisation (see the choices above)
PRECISIONS = ("fp32", "bf16", "int8")
# padded tokens a batch at most (or one text of max_seq_length); see `onnx_backend.BATCH_TOKENS`
BATCH_TOKENS = 1024


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compress_weights(model):
    """`model` with int8 weights (NNCF, a zero point per output channel)."""
    import contextlib
    import io
    import logging

    try:
        import nncf
    except ImportError:
        raise BertkitError("--backend openvino --precision int8 needs nncf: pip install nncf") from None
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bar would land among the vectors
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def openvino_embedder(embedder: Embedder, precision: str = "fp32") -> OnnxEmbedder:
    """`embedder` (its weights, tokenizer, pooling) with its encoder run by OpenVINO in `precision` ("fp32",
    "bf16" or "int8"): the graph is exported, compiled (int8: its weights compressed first) and checked here."""
    if embedder.device.type != "cpu":
        raise BertkitError("the openvino backend runs on the CPU; on a GPU use the torch backend")
    return graph_embedder(embedder, build_session(embedder, precision))


def build_session(embedder: Embedder, precision: str) -> GraphSession:
    try:
        import openvino as ov
    except ImportError:
        raise BertkitError("--backend openvino needs the openvino package: pip install openvino") from None
    if precision not in PRECISIONS:
        raise BertkitError(f"--backend openvino runs fp32, bf16 or int8, not {precision}")
    if precision == "bf16" and not native_bf16():
        raise BertkitError(
            "this CPU has no native bf16 (AVX-512 BF16 or AMX): OpenVINO would emulate it; use --precision fp32"
        )
    if precision == "int8" and not native_int8():
        raise BertkitError(
            "this CPU has no int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX): OpenVINO's int8 would run in float; "
            "use --precision fp32 or --backend onnxruntime --precision int8"
        )
    core = ov.Core()
    bf16 = precision == "bf16" or (precision == "int8" and native_bf16())
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": INT8_GROUP if precision == "int8" else 0,
    }
    with tempfile.TemporaryDirectory(prefix="bertkit-openvino-") as tmp:
        path = Path(tmp) / "model.onnx"
        traced_graph(embedder, path)
        model = core.read_model(str(path))
        if precision == "int8":
            model = compress_weights(model)
        compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        result = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(result[output], dtype=np.float32)  # a copy: the request reuses its buffer

    if precision == "fp32":
        check = check_exact(embedder, run, "openvino")
    else:
        least = BF16_MIN_COSINE if precision == "bf16" else INT8_MIN_COSINE
        check = check_approximate(embedder, run, "openvino", precision, least)
    return GraphSession("openvino", precision, run, check, batch_tokens=BATCH_TOKENS)
