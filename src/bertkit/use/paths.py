"""Which engine and precision embed fastest on this machine: `--precision auto` (the fastest path whose vectors
are within a cosine of 0.99 of fp32) and `--precision auto-exact` (the fastest whose vectors equal fp32's to
1e-4), for `embed`, `serve` and the Python API (`fastest_embedder`).

The choice is a rule, not a timing at start-up (building and timing every path would take longer than most
calls to `embed`): the order below is what `benchmarks/bench_embed.py` measured per length bucket
(docs/performance.md), and the first path in it that this machine can run is taken:

    approximate, int8 dot products (VNNI / AMX):    openvino int8, then as below
    approximate, native bf16 (AVX-512 BF16 / AMX):  openvino bf16, torch bf16, onnxruntime int8, exact paths
    approximate, no native bf16:                    onnxruntime int8, exact paths
    exact, native bf16:                             torch fp32, openvino fp32, onnxruntime fp32
    exact, no native bf16:                          openvino fp32, onnxruntime fp32, torch fp32

Measured on AMD EPYC with AVX-512 BF16 and VNNI (no AMX), 2 threads: openvino int8 (int8 weights, activations
quantised as it runs; worst cosine to fp32 0.997) was bertkit's fastest path on the mix and in 4 of 5 length
buckets, level with torch bf16 on documents cut at 256 (1.00x); of the rest openvino bf16 was the fastest on
the mix and in 4 of 5 buckets (its vectors within a cosine of 0.9999 of fp32), torch bf16 0.73-0.92x of it.
Among exact paths the three engines were within 15% of each other in every bucket, torch fp32 (oneDNN's
fused linear layers) the fastest or level on the mix and in 4 of 5 buckets, with nothing to export or compile.
On an AMD EPYC with AVX2 alone (no native bf16, no int8 dot products; 5 rounds): onnxruntime int8 was bertkit's
fastest path on the mix and in 4 of 5 buckets (documents: 0.95x openvino fp32), 1.06-1.12x onnxruntime fp32 on
the same batches; among exact paths openvino fp32 was the fastest or within 4% everywhere, 1.04-1.12x torch
fp32, which spends the difference between the matrix multiplies that the graph engines fuse.

A path that is not installed (openvino is an extra) is passed over, and so is one whose vectors fail their check
when built (a model less tame than all-MiniLM under int8): the next in the order is built instead. With
`--backend` only that engine's paths are candidates. The choice and the reason are said on stderr by the CLI.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bertkit.errors import BertkitError
from bertkit.use.embed import Embedder

AUTO = ("auto", "auto-exact")
EXACT_ORDER = (("torch", "fp32"), ("openvino", "fp32"), ("onnxruntime", "fp32"))
NO_BF16_EXACT_ORDER = (("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32"))
INT8_ORDER = (("openvino", "int8"),)
BF16_ORDER = (("openvino", "bf16"), ("torch", "bf16"), ("onnxruntime", "int8"))
NO_BF16_ORDER = (("onnxruntime", "int8"),)
NEEDS = {("openvino", "int8"): ("openvino", "nncf")}  # the packages a path needs, where more than its engine


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str
    why: str


def installed(backend: str) -> bool:
    return backend == "torch" or importlib.util.find_spec(backend) is not None


def choose(
    precision: str,
    backend: str | None,
    native_bf16: bool,
    have=installed,
    native_int8: bool = False,
    failed: dict[tuple[str, str], str] | None = None,
) -> Choice:
    """The path for `precision` ("auto", "auto-exact" or a precision) on `backend` (None: any engine);
    `have(package)` says what is installed; `failed`: paths already built that failed their check, and why."""
    failed = failed or {}
    if precision not in AUTO:
        return Choice(backend or "torch", precision, "asked for")
    exact = precision == "auto-exact"
    order = (INT8_ORDER if native_int8 else ()) + (BF16_ORDER if native_bf16 else NO_BF16_ORDER)
    exact_order = EXACT_ORDER if native_bf16 else NO_BF16_EXACT_ORDER
    order = exact_order if exact else order + exact_order
    candidates = list(dict.fromkeys((b, p) for b, p in order if backend in (None, b)))
    kind = "exact (max abs diff to fp32 <= 1e-4)" if exact else "within a cosine of 0.99 of fp32"
    hardware = "" if exact else ("int8 dot products here; " if native_int8 else "")
    hardware += "" if exact else ("native bf16 here; " if native_bf16 else "no native bf16 here; ")
    for i, (b, p) in enumerate(candidates):
        if (b, p) not in failed and all(have(package) for package in NEEDS.get((b, p), (b,))):
            missing = ", ".join(f"{x} {y}" for x, y in candidates[:i] if (x, y) not in failed)
            why = f"{hardware}the fastest path {kind} that docs/performance.md measured"
            why += f" ({missing}: not installed)" if missing else ""
            why += "".join(f"; {x} {y} refused: {message}" for (x, y), message in failed.items())
            return Choice(b, p, why)
    if failed:
        raise BertkitError(list(failed.values())[-1])
    raise BertkitError(f"--backend {backend} is not installed: pip install {backend}")


def build(embedder: Embedder, choice: Choice) -> Embedder:
    """`embedder` run on `choice.backend` (exported, compiled and checked for the graph engines)."""
    if choice.backend == "onnxruntime":
        from bertkit.use.onnx_backend import onnx_embedder

        return onnx_embedder(embedder, choice.precision)
    if choice.backend == "openvino":
        from bertkit.use.openvino_backend import openvino_embedder

        return openvino_embedder(embedder, choice.precision)
    return embedder


def fastest_embedder(
    embedder: Embedder, precision: str = "auto", backend: str | None = None
) -> tuple[Embedder, Choice]:
    """(an Embedder to call with `encode(texts, precision=choice.precision)`, the choice) for `precision`
    ("auto", "auto-exact", or fp32 / bf16 / int8 as they are) on `backend` (None: the fastest engine)."""
    from bertkit.training import bf16_supported
    from bertkit.use.openvino_backend import native_int8

    native = bf16_supported(embedder.device)
    if embedder.device.type != "cpu":  # the graph engines run on the CPU only
        backend = backend or "torch"
    int8 = native_int8() and embedder.device.type == "cpu"
    failed: dict[tuple[str, str], str] = {}
    while True:  # with auto, a path whose vectors fail their check gives way to the next
        choice = choose(precision, backend, native, native_int8=int8, failed=failed)
        try:
            return build(embedder, choice), choice
        except BertkitError as e:
            if precision not in AUTO:
                raise
            failed[choice.backend, choice.precision] = str(e)
