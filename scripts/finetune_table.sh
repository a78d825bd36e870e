#!/usr/bin/env bash
# The README's fine-tuning table: the built-in NER and word-segmentation tasks fine-tuned from the demo's
# pretrained model and from random weights of the same shape, same settings (run `make demo` first; it
# also gives the sentiment row). 3,000 training sentences, 3 epochs, 32-token windows 24 apart; the full
# dev and test splits. About 6 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BK=.venv/bin/bertkit
MODEL=${1:-runs/demo/pretrain/model}
OUT=runs/table
FT=(--model "$MODEL" --batch-size 32 --lr 5e-4 --warmup 0.1 --max-seq-length 32 --stride 24 --dropout 0.1
    --epochs 3 --max-train-examples 3000)
for task in peoples-daily-ner peoples-daily-cws; do
    $BK finetune --task $task "${FT[@]}" --out $OUT/$task-pretrained
    $BK finetune --task $task "${FT[@]}" --out $OUT/$task-random-init --random-init
done
.venv/bin/python - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
print("test F1                     pretrained   random init")
for task, label in (("peoples-daily-ner", "People's Daily NER (entity)"), ("peoples-daily-cws", "segmentation (word)")):
    f1 = [json.load(open(f"{out}/{task}-{init}/summary.json"))["test"]["f1"] for init in ("pretrained", "random-init")]
    print(f"  {label:26s} {f1[0]:10.1%}   {f1[1]:10.1%}")
EOF
