"""Benchmark: GPT-2 generation tokens/s, with and without the KV cache, bertkit against transformers'
`GPT2LMHeadModel.generate` on the same weights.

Random weights at two sizes (GPT-2 small, 12 x 768 with 50,257 tokens, and the Chinese 4 x 256 with 21,128), one
prompt of 16 tokens, 64 new tokens, greedy, no end token (every path makes all 64), one sequence at a time, fp32.
transformers loads bertkit's folder, so both run the same weights; the tokens of every path must be the same
(printed as "same tokens"). Rounds alternate between the paths; each figure is the median of 3.

    .venv/bin/python benchmarks/bench_generate.py
    .venv/bin/python benchmarks/bench_generate.py --write-docs     # and rewrite its table in docs/performance.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_tables  # noqa: E402

TABLE = "generate-speed"  # its block in docs/performance.md
SIZES = {"gpt2 (12 x 768)": "gpt2", "gpt2-mini-chinese (4 x 256)": "gpt2-mini-chinese"}
PROMPT, NEW, ROUNDS = 16, 64, 3


def ours(ckpt, prompt: list[int], cache: bool) -> list[int]:
    from bertkit.use.generate import generate_ids

    return generate_ids(ckpt, prompt, NEW, use_cache=cache)


def theirs(hf, prompt: list[int], cache: bool) -> list[int]:
    import torch

    with torch.no_grad():
        out = hf.generate(
            torch.tensor([prompt]),
            max_new_tokens=NEW,
            min_new_tokens=NEW,
            do_sample=False,
            use_cache=cache,
            pad_token_id=0,
            eos_token_id=None,
        )
    return out[0, len(prompt) :].tolist()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    doc_tables.add_arguments(p)
    args = p.parse_args()
    command = doc_tables.command_line(__file__)
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, [TABLE], command)
    import torch
    import transformers

    from bertkit.config import from_preset
    from bertkit.hf import build_heads, load_pretrained, save_pretrained
    from bertkit.model import BertEncoder

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    rows = []
    for label, preset in SIZES.items():
        torch.manual_seed(0)
        config = from_preset(preset, pad_token_id=0)
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(tmp, BertEncoder(config), build_heads(config, ["lm"]))
            ckpt = load_pretrained(tmp)
            hf = transformers.GPT2LMHeadModel.from_pretrained(tmp).eval()
        prompt = torch.randint(5, config.vocab_size, (PROMPT,)).tolist()

        paths = {
            "bertkit, KV cache": (ours, ckpt, prompt, True),
            "bertkit, no cache": (ours, ckpt, prompt, False),
            "transformers, KV cache": (theirs, hf, prompt, True),
            "transformers, no cache": (theirs, hf, prompt, False),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        tokens: dict[str, list[int]] = {}
        for name, (run, *inputs) in paths.items():  # a warm-up of each
            tokens[name] = run(*inputs)
        for _ in range(ROUNDS):
            for name, (run, *inputs) in paths.items():
                start = time.perf_counter()
                run(*inputs)
                times[name].append(time.perf_counter() - start)
        same = len({tuple(t) for t in tokens.values()}) == 1
        anchor = NEW / statistics.median(times["transformers, KV cache"])
        for name in paths:
            rate = NEW / statistics.median(times[name])
            print(f"{label:28s} {name:24s} {rate:8.1f} tokens/s  {rate / anchor:5.2f}x  same tokens: {same}")
            rows.append([label, name, f"{rate:,.1f}", f"{rate / anchor:.2f}×", "yes" if same else "**no**"])
    if args.write_docs:
        header = ["model", "path", "tokens/s", "vs transformers with its cache", "same tokens"]
        note = (
            f"One sequence, a {PROMPT}-token prompt, {NEW} new tokens, greedy, fp32, random weights, {args.threads} "
            "threads; the median of 3 alternating rounds. The cache keeps every layer's keys and values, so each new "
            "token runs one position through the layers instead of the whole text."
        )
        doc_tables.exit_on_error(doc_tables.write_table, page, TABLE, header, rows, command, note)
        print(f"wrote table {TABLE} in {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
