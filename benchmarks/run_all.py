"""`make bench`: every benchmark in turn, each printing its ratios against transformers and a summary line.

The arguments go to every benchmark (each ignores or rejects what is not its own): `make bench
ARGS=--write-docs` makes each one rewrite its tables in docs/performance.md; bench_gpu.py takes it and ignores it.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = [
    "bench_pretrain.py",
    "bench_finetune.py",
    "bench_embed.py",
    "bench_busy.py",
    "bench_data.py",
    "bench_word2vec.py",
    "bench_generate.py",
    "bench_gpu.py",
]

if __name__ == "__main__":
    failed = []
    for name in BENCHES:
        if not (HERE / name).is_file():
            continue
        print(f"\n=== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]]).returncode != 0:
            failed.append(name)
    sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
