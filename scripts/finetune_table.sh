#!/usr/bin/env bash
# The fine-tuning table (docs/results.md), one model column at a time: for each built-in task, the classical baseline
# (bertkit baseline), the model fine-tuned from random weights of the same shape, and fine-tuned from MODEL.
#   bash scripts/finetune_table.sh [MODEL] [OUT] [SEEDS]
# MODEL defaults to runs/pd/model, the first command of docs/pretraining.md (6,000 steps, trained up to 256 tokens:
# the demo column); `make pretrain-zh` gives the one-hour model
# (runs/pretrain-zh/model). Every fine-tuning run chooses its learning rate on the dev split (sentiment
# among 1e-4 3e-4 1e-3, finetune's default for small models; tagging among 3e-4 1e-3 3e-3, since 1e-3 topped
# the first grid) and keeps its best epoch by dev; test is scored once. Sentiment reads whole reviews
# (256 tokens: 96% untruncated); NER and segmentation 3,000 training sentences with a CRF, in 32-token
# windows 24 apart (128-token windows and 4 epochs gave 4x fewer steps and a lower dev F1: NER 67.8).
# About 45 minutes on 2 CPU cores for BERT-Tiny with one seed. SENT_LRS / TAG_LRS replace the learning-rate
# grids (still chosen on dev), e.g. SENT_LRS="3e-4 1e-3" to halve the sentiment runs of a larger model;
# SKIP_RANDOM=1 leaves out the random-init runs (when that column is already measured for the architecture).
# WRITE_DOCS=1 also writes the table into its block of docs/results.md (DOCS_DIR=folder for another copy of the
# docs): fine-tuning-demo, fine-tuning-one-hour or fine-tuning-one-hour-wwm for runs/pd/model,
# `make pretrain-zh` and its whole-word-masking run; DOCS_TABLE=name for another model. The block is checked first.
set -euo pipefail
cd "$(dirname "$0")/.."
BK=.venv/bin/bertkit
MODEL=${1:-runs/pd/model}
OUT=${2:-runs/table}
SEEDS=${3:-0}
if [ -n "${WRITE_DOCS:-}" ]; then
    case "$MODEL" in
        runs/pd/model) TABLE=fine-tuning-demo ;;
        runs/pretrain-zh/model) TABLE=fine-tuning-one-hour ;;
        runs/pretrain-zh-wwm/model) TABLE=fine-tuning-one-hour-wwm ;;
        *) TABLE=${DOCS_TABLE:?WRITE_DOCS=1: no table of docs/results.md is known for $MODEL; set DOCS_TABLE=<block name>} ;;
    esac
    TABLE=${DOCS_TABLE:-$TABLE}
    export TABLE
    .venv/bin/python benchmarks/doc_tables.py "${DOCS_DIR:-docs}/results.md" --require "$TABLE" \
        --command "WRITE_DOCS=1 bash scripts/finetune_table.sh $*"
fi
COMMON=(--model "$MODEL" --batch-size 32 --warmup 0.1 --dropout 0.1 --seeds $SEEDS)

run() {  # name, the task's arguments (baseline and finetune), fine-tuning's own arguments
    local name=$1 task=$2 ft=$3
    # shellcheck disable=SC2086 # the argument strings are meant to split
    $BK baseline $task --out "$OUT/$name-baseline" --overwrite
    $BK finetune $task $ft "${COMMON[@]}" --overwrite --out "$OUT/$name-pretrained"
    if [ -z "${SKIP_RANDOM:-}" ]; then
        $BK finetune $task $ft "${COMMON[@]}" --overwrite --out "$OUT/$name-random-init" --random-init
    fi
}
SENT_LR=${SENT_LRS:+--lr $SENT_LRS}
run sentiment-all "--task sentiment" "--max-seq-length 256 --epochs 3 $SENT_LR"
run sentiment-500 "--task sentiment --max-train-examples 500" "--max-seq-length 256 --epochs 15 $SENT_LR"
TAG="--max-seq-length 32 --stride 24 --epochs 6 --crf --lr ${TAG_LRS:-3e-4 1e-3 3e-3}"
run ner "--task peoples-daily-ner --max-train-examples 3000" "$TAG"
run cws "--task peoples-daily-cws --max-train-examples 3000" "$TAG"
.venv/bin/python - "$OUT" "$MODEL" "$SEEDS" <<'EOF'
import json, os, shlex, sys
out, model, seeds = sys.argv[1], sys.argv[2], sys.argv[3]
rows = (("sentiment-all", "sentiment, 13,891 labels", "accuracy"), ("sentiment-500", "sentiment, 500 labels", "accuracy"),
        ("ner", "People's Daily NER (entity F1)", "f1"), ("cws", "word segmentation (word F1)", "f1"))
# the docs table's rows: the task as run above, and the metric's name
docs = {"sentiment-all": ("sentiment, 13,891 training reviews, whole reviews (256 tokens), 3 epochs", "accuracy"),
        "sentiment-500": ("sentiment, 500 training reviews, 15 epochs", "accuracy"),
        "ner": ("People's Daily NER (PER/LOC/ORG), 3,000 sentences, CRF, 32-token windows, 6 epochs", "entity F1"),
        "cws": ("People's Daily word segmentation (BMES), 3,000 sentences, CRF, 32-token windows, 6 epochs", "word F1")}
def cell(value, metric, values=()):  # accuracy in %, F1 in points; each seed in brackets when several
    seeds = f" ({', '.join(f'{100 * v:.1f}' for v in values)})" if len(values) > 1 else ""
    return f"{100 * value:.1f}" + ("%" if metric == "accuracy" else "") + seeds
print(f"test split; pretrained = {model}")
print(f"{'task':32s} {'baseline':>9s} {'random init':>12s} {'pretrained':>11s}")
table = []
for name, label, metric in rows:
    base = json.load(open(f"{out}/{name}-baseline/summary.json"))["test"][metric]
    means, cells = [], []
    for init in ("random-init", "pretrained"):
        try:
            t = json.load(open(f"{out}/{name}-{init}/summary.json"))["test"]
            means.append(f"{t['mean'] if 'mean' in t else t[metric]:.1%}")
            cells.append(cell(t["mean"] if "mean" in t else t[metric], metric, t.get("values", ())))
        except FileNotFoundError:  # SKIP_RANDOM
            means.append("—")
            cells.append(None)
    print(f"{label:32s} {base:9.1%} {means[0]:>12s} {means[1]:>11s}")
    table.append([*docs[name], cell(base, metric), *cells])
if os.environ.get("WRITE_DOCS"):
    sys.path.insert(0, "benchmarks")
    import doc_tables
    header = ["task (test split)", "metric", "baseline", "random init", "pretrained"]
    if all(row[3] is None for row in table):  # SKIP_RANDOM: that column is measured in another table
        header, table = header[:3] + header[4:], [row[:3] + row[4:] for row in table]
    table = [[c if c is not None else "—" for c in row] for row in table]
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("WRITE_DOCS", "SKIP_RANDOM", "SENT_LRS", "TAG_LRS",
           "DOCS_DIR", "DOCS_TABLE") if os.environ.get(k)]
    command = shlex.join(["bash", "scripts/finetune_table.sh", model, out, seeds])
    note = (f"Pretrained = `{model}`; seeds {seeds} (the mean, each seed in brackets when several). Each fine-tuned "
            "cell chose its learning rate on dev and kept its best epoch by dev; dropout 0.1, batch 32, warm-up 10%.")
    page = os.path.join(os.environ.get("DOCS_DIR") or "docs", "results.md")
    doc_tables.exit_on_error(doc_tables.write_table, page, os.environ["TABLE"], header, table,
                             " ".join(env + [command]), note)
EOF
# Some gaps are a point or two on ~1,800 test items: say whether the test set can tell them apart
for name in sentiment-all sentiment-500 ner cws; do
    echo "$name: pretrained (A) against the baseline (B), paired on the test examples"
    $BK compare "$OUT/$name-pretrained" "$OUT/$name-baseline"
done
