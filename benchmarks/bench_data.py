"""Benchmark: corpus -> token shards, throughput and peak memory at two corpus sizes.

Writes the built-in People's Daily corpus `--scale` times into a temporary folder (Google's format, one file
per copy; copy k shuffles the sentences of every document with seed k, so no copy repeats another), trains a
WordPiece vocabulary on the built-in corpus, then builds shards with a fresh cache at scale 1 and at
`--scale`. Each build runs in its own subprocess so that its peak RSS (getrusage ru_maxrss) is its own: if
the pipeline streams, the two peaks should be about the same although the corpora differ `--scale`-fold.

Then, through training: `bertkit pretrain` for 3 steps on each corpus with the shards already cached, in its
own process, measuring its peak RSS and the time until the first optimizer step is logged (the epoch's
first chunk of instances must be built first: `PretrainingData.chunk_tokens`).

    .venv/bin/python benchmarks/bench_data.py --scale 20
    .venv/bin/python benchmarks/bench_data.py --write-docs     # and rewrite its two tables in docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_tables  # noqa: E402

TABLES = ("data-preparation", "data-through-training")  # their blocks in docs/performance.md


def write_corpus(folder: Path, documents: list[list[str]], copies: int) -> None:
    folder.mkdir(parents=True)
    for k in range(copies):
        rng = random.Random(k)
        with open(folder / f"copy-{k:03d}.txt", "w", encoding="utf-8") as f:
            for doc in documents:
                sentences = list(doc)
                if k:  # copy 0 is the corpus as it is
                    rng.shuffle(sentences)
                f.write("\n".join(sentences) + "\n\n")


def child(corpus: str, tokenizer_dir: str, cache: str, batch_docs: int) -> None:
    """Build shards once and print one JSON line of measurements."""
    from bertkit.pretrain.shards import build_shards
    from bertkit.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_folder(tokenizer_dir)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: imports + tokenizer

    encode_seconds = 0.0
    encode_batch = Tokenizer.encode_batch

    def timed(self, *args, **kwargs):  # how much of the time is the tokenizer itself
        nonlocal encode_seconds
        start = time.perf_counter()
        result = encode_batch(self, *args, **kwargs)
        encode_seconds += time.perf_counter() - start
        return result

    Tokenizer.encode_batch = timed
    start = time.perf_counter()
    shards = build_shards(corpus, tokenizer, cache, batch_docs=batch_docs, progress=True)  # fmt as the CLI: auto
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mb": shards.meta["bytes_of_text"] / 1e6,
                "tokens": shards.num_tokens,
                "documents": len(shards),
                "seconds": seconds,
                "encode_seconds": encode_seconds,
                "rss_before_mb": rss_before / 1024,
                "peak_rss_mb": peak / 1024,
            }
        )
    )


def train_child(corpus: str, tokenizer_dir: str, cache: str, out: str) -> None:
    """Pretrain for 3 steps on cached shards and print one JSON line: peak RSS, seconds to the first batch."""
    from bertkit.cli.table import main as cli
    from bertkit.pretrain.dataset import PretrainingData

    start = time.perf_counter()
    first: list[float] = []
    batches = PretrainingData.batches

    def timed(self, *args, **kwargs):  # the first training batch marks the end of the wait
        for item in batches(self, *args, **kwargs):
            if not first:
                first.append(time.perf_counter() - start)
            yield item

    PretrainingData.batches = timed
    flags = ["--preset", "bert-mini-chinese", "--max-seq-length", "128", "--batch-size", "32", "--steps", "3"]
    flags += ["--objective", "full", "--eval-every", "1000", "--log-every", "1", "--precision", "fp32"]
    code = cli(
        ["pretrain", "--out", out, "--corpus", corpus, "--tokenizer", tokenizer_dir, "--cache-dir", cache, *flags]
    )
    if code:
        raise SystemExit(code)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = time.perf_counter() - start
    print(json.dumps({"first_step_seconds": first[0], "total_seconds": seconds, "peak_rss_mb": peak / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20, help="copies of the built-in corpus (default: 20)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="WordPiece vocabulary to train (default: 8000)")
    parser.add_argument("--batch-docs", type=int, default=1000, help="documents per encode_batch call (default: 1000)")
    parser.add_argument("--child", nargs=3, metavar=("CORPUS", "TOKENIZER", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--train-child", nargs=4, help=argparse.SUPPRESS)
    doc_tables.add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        child(*args.child, batch_docs=args.batch_docs)
        return
    if args.train_child:
        train_child(*args.train_child)
        return
    page = args.docs_dir / "performance.md"
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, list(TABLES), doc_tables.command_line(__file__))

    from bertkit.pretrain.corpus import read_documents
    from bertkit.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        work = Path(tmp)
        documents = list(read_documents("peoples-daily"))
        tokenizer = Tokenizer.train(("".join(doc) for doc in documents), vocab_size=args.vocab_size)
        tokenizer.save(work / "tokenizer")
        print(f"tokenizer: {tokenizer.vocab_size} tokens, trained on the built-in corpus", file=sys.stderr)

        results = {}
        for scale in sorted({1, args.scale}):
            corpus = work / f"corpus-{scale}"
            write_corpus(corpus, documents, scale)
            command = [sys.executable, __file__, "--batch-docs", str(args.batch_docs), "--child"]
            # the shards go where `bertkit pretrain --cache-dir cache-N` looks for them (cache-N/shards)
            command += [str(corpus), str(work / "tokenizer"), str(work / f"cache-{scale}" / "shards")]
            out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            results[scale] = json.loads(out.strip().splitlines()[-1])
            command = [
                sys.executable,
                __file__,
                "--train-child",
                str(corpus),
                str(work / "tokenizer"),
                str(work / f"cache-{scale}"),
                str(work / f"run-{scale}"),
            ]
            out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            results[scale] |= {"train": json.loads(out.strip().splitlines()[-1])}

    print(
        f"{'scale':>5} {'MB text':>8} {'seconds':>8} {'MB/s':>6} {'tokens/s':>10} {'encode %':>8} "
        f"{'RSS before MB':>13} {'peak RSS MB':>11}"
    )
    for scale, r in results.items():
        print(
            f"{scale:>5} {r['mb']:>8.1f} {r['seconds']:>8.1f} {r['mb'] / r['seconds']:>6.2f} "
            f"{r['tokens'] / r['seconds']:>10,.0f} {100 * r['encode_seconds'] / r['seconds']:>7.0f}% "
            f"{r['rss_before_mb']:>13.0f} {r['peak_rss_mb']:>11.0f}"
        )
    print(f"{'scale':>5} {'seconds to first step':>22} {'peak RSS MB (training)':>23}")
    for scale, r in results.items():
        print(f"{scale:>5} {r['train']['first_step_seconds']:>22.1f} {r['train']['peak_rss_mb']:>23.0f}")
    small, big = results[1], results[max(results)]
    print(
        f"summary: {big['mb']:.0f} MB of text -> {big['tokens'] / 1e6:.1f}M tokens in {big['seconds']:.0f} s "
        f"({big['mb'] / big['seconds']:.2f} MB/s, {big['tokens'] / big['seconds'] / 1e3:.0f}k tokens/s); "
        f"peak RSS {small['peak_rss_mb']:.0f} MB at scale 1 vs {big['peak_rss_mb']:.0f} MB at scale {max(results)}; "
        f"training: first step after {small['train']['first_step_seconds']:.1f} s / "
        f"{big['train']['first_step_seconds']:.1f} s, peak RSS {small['train']['peak_rss_mb']:.0f} / "
        f"{big['train']['peak_rss_mb']:.0f} MB"
    )

    if args.write_docs:
        write_docs(page, results, args)


def write_docs(page: Path, results: dict, args) -> None:
    """The two tables of docs/performance.md: building shards, then the start of training on them."""
    command = doc_tables.command_line(__file__)
    header = ["copies of the corpus", "MB of text", "tokens", "seconds", "MB/s", "tokens/s", "peak RSS MB"]
    rows = [
        [f"×{scale}", f"{r['mb']:,.1f}", f"{r['tokens'] / 1e6:.1f}M", f"{r['seconds']:.1f}"]
        + [f"{r['mb'] / r['seconds']:.2f}", f"{r['tokens'] / r['seconds'] / 1e6:.2f}M", f"{r['peak_rss_mb']:,.0f}"]
        for scale, r in results.items()
    ]
    note = (
        f"The built-in People's Daily corpus, copied; a WordPiece vocabulary of {args.vocab_size:,} trained on it; "
        f"{args.batch_docs:,} documents per `encode_batch` call; peak RSS of the process that builds the shards."
    )
    doc_tables.exit_on_error(doc_tables.write_table, page, TABLES[0], header, rows, command, note)
    header = ["copies of the corpus", "seconds to the first optimizer step", "peak RSS MB"]
    rows = [
        [f"×{scale}", f"{r['train']['first_step_seconds']:.1f}", f"{r['train']['peak_rss_mb']:,.0f}"]
        for scale, r in results.items()
    ]
    note = "`bertkit pretrain`, BERT-Mini, 32 × 128, fp32, `--objective full`, on the shards already cached."
    doc_tables.exit_on_error(doc_tables.write_table, page, TABLES[1], header, rows, command, note)


if __name__ == "__main__":
    main()
