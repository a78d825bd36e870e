"""Pretraining throughput: bertkit vs transformers.BertForPreTraining, same config, weights and batches.

A training step is forward + backward + AdamW on an MLM + NSP batch. Timings alternate between the two
implementations in one process (so both see the same machine state); peak memory is measured in a child
process per implementation, since a process's peak RSS only grows.

    python benchmarks/bench_pretrain.py                 # 4 layers, 256 hidden, 21,128 vocab, 32 x 128
    python benchmarks/bench_pretrain.py --steps 20 --precision fp32 --dropout 0.1
    python benchmarks/bench_pretrain.py --write-docs    # and rewrite the table of docs/performance.md

By default each precision runs with BERT's dropout 0.1 and with the 0 of bertkit's recipes (Cramming), the
rows of the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_tables  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TABLE = "pretraining-speed"  # its block in docs/performance.md


def make_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Google-style instances: [CLS] A [SEP] B [SEP], 15% masked (at most 20), 50% random next."""
    from bertkit.pretrain.masking import MaskingConfig, mask_batch

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, seq))
    ids[:, 0], ids[:, seq // 2], ids[:, -1] = 2, 3, 3
    types = np.zeros((batch, seq), dtype=np.int64)
    types[:, seq // 2 + 1 :] = 1
    masked, labels = mask_batch(
        ids, MaskingConfig(), rng, mask_token_id=4, vocab_size=vocab, special_ids=(0, 1, 2, 3, 4)
    )
    return {
        "input_ids": torch.from_numpy(masked),
        "token_type_ids": torch.from_numpy(types),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": torch.from_numpy(labels),
        "next_sentence_label": torch.from_numpy(rng.integers(0, 2, size=batch)),
    }


def model_config(args):
    """The benchmarked BERT: `--layers` x `--hidden`, heads of 64, FFN 4x, the Chinese vocabulary."""
    from bertkit.config import from_preset

    return from_preset(
        "bert-mini-chinese",
        num_hidden_layers=args.layers,
        hidden_size=args.hidden,
        num_attention_heads=args.hidden // 64,
        intermediate_size=4 * args.hidden,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
    )


def build(impl: str, args):
    """(model, step function) for 'bertkit' or 'transformers', with identical weights (seed 0)."""
    import tempfile

    from bertkit.hf import save_pretrained
    from bertkit.model import BertEncoder, MLMHead, NSPHead
    from bertkit.pretrain.objectives import BertPretraining

    torch.manual_seed(0)
    config = model_config(args)
    ours = BertPretraining(BertEncoder(config), MLMHead(config), NSPHead(config))
    if impl == "bertkit":
        model = ours

        def loss_fn(b):  # MLM mean over masked tokens + NSP mean over sequences, as the loop's step sums them
            r = model(b)
            return r.total({name: loss.count for name, loss in r.losses.items()})
    else:
        import transformers

        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(tmp, ours.encoder, ours.heads())
            model = transformers.BertForPreTraining.from_pretrained(tmp, attn_implementation="sdpa")

        def loss_fn(b):
            return model(**b).loss

    model.train()
    # The same optimizer for both, fused as bertkit's loop runs it (and as transformers' Trainer does by
    # default with recent torch): the ratio measures the models.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    use_bf16 = args.precision == "bf16"

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = loss_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return model, step


def child(args) -> None:
    """Run one implementation for a few steps; print its peak RSS (MB) as JSON."""
    batch = make_batch(21128, args.batch, args.seq)
    _, step = build(args.child, args)
    for _ in range(3):
        step(batch)
    print(json.dumps({"peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """VmHWM: this process's peak resident memory. (ru_maxrss would include the parent's peak at fork.)"""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per implementation")
    p.add_argument(
        "--dropout",
        type=float,
        nargs="+",
        default=[0.1, 0.0],
        help="one run per value: BERT's 0.1 and the 0 bertkit's recipes pretrain with (Cramming)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "both"],
        default="auto",
        help="auto: fp32, plus bf16 where the CPU has native bf16 (emulated bf16 is ~20x slower)",
    )
    p.add_argument("--child", choices=["bertkit", "transformers"], help=argparse.SUPPRESS)
    doc_tables.add_arguments(p)
    args = p.parse_args()
    if args.child:
        args.dropout = args.dropout[0]
        return child(args)
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], doc_tables.command_line(__file__))

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; model {args.layers} layers x {args.hidden} hidden, "
        f"vocab 21128, batch {args.batch} x {args.seq}"
    )
    from bench_embed import precisions_to_run

    precisions = precisions_to_run(args.precision)
    rows = []
    dropouts = args.dropout
    peaks = {}
    for precision in precisions:
        for dropout in dropouts:
            args.precision, args.dropout = precision, dropout
            label = precision if len(dropouts) == 1 else f"{precision}, dropout {dropout:g}"
            tps, mem, share, peaks[precision] = measure(args, label)
            rows.append((label, f"{precision}, {dropout:g}", tps, mem, share))
    print(
        "summary: "
        + "; ".join(
            f"{p} {t['bertkit'] / t['transformers']:.2f}x tokens/s, {m['bertkit'] / m['transformers']:.2f}x peak memory"
            for p, _, t, m, _ in rows
        )
    )
    if args.write_docs:
        header = ["precision, dropout", "bertkit tokens/s", "`BertForPreTraining` tokens/s", "ratio"]
        header += ["peak memory vs it", "bertkit's useful FLOPs / matmul peak"]
        table = [
            [
                row,
                f"{t['bertkit']:,.0f}",
                f"{t['transformers']:,.0f}",
                f"{t['bertkit'] / t['transformers']:.2f}×",
                f"{m['bertkit'] / m['transformers']:.2f}×",
                f"{share:.0%}",
            ]
            for _, row, t, m, share in rows
        ]
        note = (
            f"{args.layers} layers × {args.hidden} hidden, vocab 21,128, batch {args.batch} × {args.seq}, median of "
            f"{args.steps} steps each, fused AdamW for both; peak memory is each one's peak RSS in a process of its "
            "own. Matrix-multiply peak measured (2,048² `F.linear`): "
            + ", ".join(f"{p} {v:,.0f} GFLOP/s" for p, v in peaks.items())
            + "."
        )
        doc_tables.exit_on_error(
            doc_tables.write_table, page, TABLE, header, table, doc_tables.command_line(__file__), note
        )


def measure(args, label: str):
    """One precision and dropout, printed as `label`: tokens/s, peak RSS (MB), useful FLOPs / matmul peak, the peak."""
    precision = args.precision
    batch = make_batch(21128, args.batch, args.seq)
    steps = {impl: build(impl, args)[1] for impl in ("bertkit", "transformers")}
    for s in steps.values():  # warm-up: allocator, oneDNN primitive caches
        s(batch)
    times = {impl: [] for impl in steps}
    for _ in range(args.steps):
        for impl, s in steps.items():  # alternate so both see the same machine state
            t = time.perf_counter()
            s(batch)
            times[impl].append(time.perf_counter() - t)
    tokens = args.batch * args.seq
    tps = {impl: tokens / float(np.median(t)) for impl, t in times.items()}
    from bench_embed import matmul_peak
    from bench_gpu import pretraining_flops

    config = model_config(args)
    masked = int((batch["labels"] != -100).sum())
    peak = matmul_peak(torch.float32 if precision == "fp32" else torch.bfloat16)
    share = pretraining_flops(config, args.batch, args.seq, masked) / float(np.median(times["bertkit"])) / 1e9 / peak
    mem = {}
    for impl in steps:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            impl,
            "--precision",
            precision,
            "--layers",
            str(args.layers),
            "--hidden",
            str(args.hidden),
            "--batch",
            str(args.batch),
            "--seq",
            str(args.seq),
            "--dropout",
            str(args.dropout),
        ]
        mem[impl] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["peak_mb"]
    print(
        f"{label}: bertkit {tps['bertkit']:,.0f} tokens/s, transformers {tps['transformers']:,.0f} "
        f"tokens/s -> {tps['bertkit'] / tps['transformers']:.2f}x; peak RSS bertkit {mem['bertkit']:,.0f} MB, "
        f"transformers {mem['transformers']:,.0f} MB ({mem['bertkit'] / mem['transformers']:.2f}x); bertkit's "
        f"useful FLOPs (3x forward, MLM head on masked positions) {share:.0%} of the {precision} matmul peak "
        f"({peak:,.0f} GFLOP/s)"
    )
    return tps, mem, share, peak


if __name__ == "__main__":
    main()
