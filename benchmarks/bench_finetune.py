"""Fine-tuning throughput: bertkit's classifier vs transformers.BertForSequenceClassification, same encoder
weights and batches, dropout 0.1 (BERT's fine-tuning default), fused AdamW for both.

A step is forward + backward + AdamW on a batch of sequences of one length (the sentiment task reads whole
reviews: 256 tokens). Timings alternate between the two in one process, so both see the same machine state.

    python benchmarks/bench_finetune.py                      # BERT-Mini shape (4 x 256), 32 x 256 and 32 x 64
    python benchmarks/bench_finetune.py --precision fp32 --seq 128
    python benchmarks/bench_finetune.py --write-docs     # and rewrite the table of docs/performance.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_tables  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TABLE = "fine-tuning-speed"  # its block in docs/performance.md


def build(impl: str, args, precision: str):
    """A step function for 'bertkit' or 'transformers', with identical encoder weights (seed 0)."""
    from bertkit.config import from_preset
    from bertkit.finetune.model import TaskModel
    from bertkit.hf import save_pretrained
    from bertkit.model import BertEncoder, ClassifierHead

    torch.manual_seed(0)
    config = from_preset(
        "bert-mini-chinese",
        vocab_size=args.vocab,
        num_hidden_layers=args.layers,
        hidden_size=args.hidden,
        num_attention_heads=args.hidden // 64,
        intermediate_size=4 * args.hidden,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    encoder = BertEncoder(config, add_pooler=True)
    if impl == "bertkit":
        model = TaskModel(encoder, ClassifierHead(config, num_labels=2), "classification")
    else:  # the same encoder weights; its own 2-way classifier
        import transformers

        transformers.logging.set_verbosity_error()  # its report of the fresh classifier
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(tmp, encoder, {})
            model = transformers.BertForSequenceClassification.from_pretrained(
                tmp, num_labels=2, attn_implementation="sdpa"
            )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step(ids, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(ids) if impl == "bertkit" else model(input_ids=ids).logits
            loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8000, help="the one-hour model's vocabulary is ~8,000")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, nargs="+", default=[256, 64])
    p.add_argument("--steps", type=int, default=6, help="timed steps per implementation")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "both"], default="auto")
    doc_tables.add_arguments(p)
    args = p.parse_args()
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], doc_tables.command_line(__file__))
    from bench_embed import precisions_to_run

    precisions = precisions_to_run(args.precision)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; classifier {args.layers} layers x {args.hidden} hidden, "
        f"vocab {args.vocab}, batch {args.batch}, dropout 0.1"
    )
    summary, table = [], []
    for precision in precisions:
        for seq in args.seq:
            rng = np.random.default_rng(0)
            ids = torch.from_numpy(rng.integers(5, args.vocab, size=(args.batch, seq)))
            ids[:, 0] = 2
            labels = torch.from_numpy(rng.integers(0, 2, size=args.batch))
            steps = {impl: build(impl, args, precision) for impl in ("bertkit", "transformers")}
            for s in steps.values():  # warm-up
                s(ids, labels)
            times = {impl: [] for impl in steps}
            for _ in range(args.steps):
                for impl, s in steps.items():
                    t = time.perf_counter()
                    s(ids, labels)
                    times[impl].append(time.perf_counter() - t)
            rate = {impl: args.batch / float(np.median(t)) for impl, t in times.items()}
            ratio = rate["bertkit"] / rate["transformers"]
            print(
                f"{precision} {args.batch} x {seq}: bertkit {rate['bertkit']:,.1f} sequences/s, transformers "
                f"{rate['transformers']:,.1f} -> {ratio:.2f}x",
                flush=True,
            )
            summary.append(f"{precision} x{seq} {ratio:.2f}x")
            table.append(
                [f"{precision}, {args.batch} × {seq}", f"{rate['bertkit']:,.1f}", f"{rate['transformers']:,.1f}"]
                + [f"{ratio:.2f}×"]
            )
    print("summary: " + ", ".join(summary))
    if args.write_docs:
        header = ["precision, batch × tokens", "bertkit sequences/s", "`BertForSequenceClassification`", "ratio"]
        note = (
            f"A classifier on {args.layers} layers × {args.hidden} hidden, vocab {args.vocab:,}, dropout 0.1, fused "
            f"AdamW for both; median of {args.steps} steps each."
        )
        command = doc_tables.command_line(__file__)
        doc_tables.exit_on_error(doc_tables.write_table, page, TABLE, header, table, command, note)


if __name__ == "__main__":
    main()
