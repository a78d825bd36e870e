#!/usr/bin/env bash
# `make demo`: pretrain a small Chinese BERT on the built-in People's Daily corpus, then use it.
# Everything lands in runs/demo/ (model/, metrics.jsonl, curves.png). About 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BK=.venv/bin/bertkit
STEPS=${DEMO_STEPS:-2000}

echo "== 1. How big is BERT? (the notes' exercise: bert-base-chinese)"
$BK params bert-base-chinese

echo
echo "== 2. Pretrain a 2-layer, 128-hidden BERT (BERT-Tiny size) with MLM + NSP on People's Daily 1998 ($STEPS steps)"
$BK pretrain --out runs/demo --corpus peoples-daily --preset bert-tiny-chinese --vocab-size 8000 \
    --max-seq-length 128 --batch-size 32 --steps "$STEPS" --lr 2e-3 --warmup 0.03 \
    --eval-every 200 --save-every 500 --cache-dir runs/cache

echo
echo "== 3. Fill in the blanks with the model it just trained"
$BK fill-mask runs/demo/model "中国共产党第十五次全国代表大会在北[MASK]召开。" \
    "我们要继续深化经济体制[MASK]革。" "新华社记者报[MASK]。" "全国人民[MASK]结一致，开创新局面。"

echo
echo "Curves: runs/demo/curves.png   metrics: runs/demo/metrics.jsonl   model: runs/demo/model"
