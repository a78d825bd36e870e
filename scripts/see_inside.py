"""`make see-inside`: the figures of docs/seeing-inside.md that need trained models — word2vec and ELMo on the
corpus the recipes' BERT was pretrained on, then the polysemy lesson for 苹果 on all three.

1. word2vec (skip-gram, jieba words, the default settings) on peoples-daily + reviews     ~1 min
2. ELMo's biLM on the same corpus, --steps (default 3,000)                                 ~10 min on 2 cores
3. the lesson: BERT = runs/recipes/bert/pretrain/model (`make recipes`' BERT, 2 x 128, 7.5 minutes of
   MLM + NSP) when it exists, else `make demo`'s model; the table goes into docs/seeing-inside.md (block
   "polysemy") and the picture into docs/images/polysemy.png.

Each step is skipped when its run folder is complete (rerun to continue after a stop).

    .venv/bin/python scripts/see_inside.py                  # into runs/see-inside
    .venv/bin/python scripts/see_inside.py --write-docs     # and rewrite the block and the picture
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import doc_tables  # noqa: E402

# (context, sense): 苹果 the fruit and 苹果 the brand, the word at varied positions in both senses
CONTEXTS = [
    ("我喜欢吃苹果", "水果"),
    ("苹果和华为哪个牌子好", "品牌"),
    ("苹果手机很好用", "品牌"),
    ("一斤苹果多少钱", "水果"),
    ("他在超市买了几个红苹果", "水果"),
    ("这台笔记本是苹果公司的产品", "品牌"),
    ("苹果树上结满了果子", "水果"),
    ("我用的是苹果电脑", "品牌"),
]
BERT_MODELS = ["runs/recipes/bert/pretrain/model", "runs/demo/pretrain/model"]


def bk(*args: str) -> None:
    command = [str(ROOT / ".venv" / "bin" / "bertkit"), *args]
    print("$ bertkit " + " ".join(args), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/see-inside"))
    p.add_argument("--steps", type=int, default=3000, help="ELMo's training steps")
    doc_tables.add_arguments(p)
    args = p.parse_args()
    page = args.docs_dir / "seeing-inside.md"
    command = doc_tables.command_line(__file__)
    if args.write_docs:
        doc_tables.exit_on_error(doc_tables.require_blocks, page, ["polysemy"], command)
    bert = next((m for m in BERT_MODELS if (ROOT / m / "config.json").is_file()), None)
    if bert is None:
        sys.exit(f"no BERT model: run `make recipes` or `make demo` first ({' or '.join(BERT_MODELS)})")
    out = ROOT / args.out
    corpus = ["--corpus", "peoples-daily", "reviews"]
    if not (out / "w2v" / "summary.json").is_file():
        shutil.rmtree(out / "w2v", ignore_errors=True)
        bk("word2vec", "train", "--out", str(out / "w2v"), *corpus, "--progress")
    if not (out / "elmo" / "summary.json").is_file():
        resume = ["--resume"] if (out / "elmo").exists() else []
        bk("elmo", "train", "--out", str(out / "elmo"), *corpus, "--steps", str(args.steps), "--progress", *resume)
    texts, senses = zip(*CONTEXTS, strict=True)
    lesson = ["similarity", bert, *texts, "--word", "苹果", "--senses", *senses]
    shown_out = Path(args.out)  # as given (runs/see-inside): the command in the docs names no machine's folders
    lesson += ["--word2vec", str(shown_out / "w2v" / "vectors.bin"), "--elmo", str(shown_out / "elmo" / "model")]
    bk(*lesson, "--out", str(shown_out / "polysemy"))
    if not args.write_docs:
        return 0
    rows = json.loads((out / "polysemy" / "polysemy.json").read_text(encoding="utf-8"))
    table = (out / "polysemy" / "polysemy.md").read_text(encoding="utf-8").splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    elmo = json.loads((out / "elmo" / "summary.json").read_text(encoding="utf-8"))
    w2v = json.loads((out / "w2v" / "summary.json").read_text(encoding="utf-8"))
    shown = " ".join(f"{i + 1}. {t} ({s})" for i, (t, s) in enumerate(CONTEXTS))
    note = (
        f"Contexts: {shown}. BERT: `{bert}`. ELMo: {args.steps:,} steps on the same corpus, held-out perplexity "
        f"{elmo['held_out']['perplexity']:.1f} per character. word2vec: skip-gram on its jieba words "
        f"({w2v['vocab']:,} words, {w2v['engine']} engine). The full command: `bertkit "
        + " ".join(lesson[:2] + ["…"] + lesson[2 + len(texts) :])
        + "`."
    )
    doc_tables.exit_on_error(doc_tables.write_table, page, "polysemy", header, body, command, note)
    (args.docs_dir / "images").mkdir(exist_ok=True)
    shutil.copyfile(out / "polysemy" / "polysemy.png", args.docs_dir / "images" / "polysemy.png")
    print(f"wrote table polysemy in {page} and docs/images/polysemy.png ({len(rows['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
