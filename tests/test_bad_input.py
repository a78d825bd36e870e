"""A careless user's mistakes, across commands: each is one line on stderr naming the file, flag or field and
what to do, exit code 2, no traceback, and every file that was there before is left as it was.

The cases are rows of docs/bad-input.md (generated): (class, what the user did, command, message).
"""

import json
import math
import shutil

import numpy as np
import pytest
from helpers import model_folders, one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli import main
from bertkit.config import BertConfig
from bertkit.hf import load_pretrained, save_pretrained
from bertkit.lineage.vectors import WordVectors
from bertkit.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    model_folders(root)
    save_tiny_bert(root / "other-vocab", Tokenizer.train(iter(["另一个词表 other words"] * 5), 60, min_frequency=1))
    ckpt = load_pretrained(root / "plain")
    tok = ckpt.tokenizer
    (root / "empty.txt").write_text("", "utf-8")
    (root / "texts.txt").write_text("我们很好\n今天一般\n", "utf-8")
    (root / "latin1.txt").write_bytes("好\n".encode() + "caf\xe9\n".encode("latin-1"))
    (root / "corpus.txt").write_text("我们今天在北京开会。\n大家都很好！\n" * 20, "utf-8")
    (root / "entities-tab.txt").write_text("北京\tns\n", "utf-8")
    run = root / "old-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "mlm_loss": 9.0}\n', "utf-8")
    (run / "train_config.json").write_text("{}\n", "utf-8")
    old = root / "old-finetune"
    old.mkdir()
    (old / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n', "utf-8")
    (old / "summary.json").write_text("{}\n", "utf-8")
    (root / "w2v").mkdir()
    WordVectors(["我们", "今天"], np.ones((2, 4), np.float32)).save(root / "w2v" / "vectors.bin", binary=True)
    elmo = f"elmo train --out {root}/elmo --corpus {root}/corpus.txt --steps 1 --hidden-size 4 --embedding-size 4"
    assert main(elmo.split()) == 0
    (root / "elmo-ft").mkdir()
    (root / "elmo-ft" / "summary.json").write_text("{}\n", "utf-8")
    docs = ["我们今天在北京开会。大家都很好！", "他们明天去上海。天气不错。", "新年快乐，朋友们。世界经济发展。"]
    (root / "docs.txt").write_text("\n\n".join(d.replace("。", "。\n") for d in docs * 8), "utf-8")
    for args in ("--out {r}/run5 --steps 5", "--out {r}/no-ckpt --steps 2 --save-every 100"):
        assert main(f"pretrain {args} {RUN}".format(r=root).split()) == 0
    shutil.copytree(root / "run5", root / "damaged")
    for checkpoint in (root / "damaged" / "checkpoints").iterdir():  # a disk that filled up: every one cut short
        weights = checkpoint / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    for name, key, value in (("eps", "layer_norm_eps", -1), ("init", "initializer_range", math.nan)):
        folder = root / f"bad-{name}"
        save_pretrained(folder, ckpt.encoder, {}, tok)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {key: value}), "utf-8")  # NaN as JSON's NaN
    retrieval_files(root)
    return root


def retrieval_files(root) -> None:
    """Pairs files with one bad line each, a BEIR folder whose qrels name an unknown document, and indexes."""
    from bertkit.retrieval.benchmark import RetrievalSet, write_beir
    from bertkit.use.index import VectorIndex

    good = json.dumps({"query": "今天", "positive": "天气很好"}, ensure_ascii=False)
    for name, row in (
        ("no-positive", {"query": "北京"}),
        ("empty-query", {"query": " ", "positive": "北京"}),
        ("negatives-str", {"query": "北京", "positive": "开会", "negatives": "天气"}),
    ):
        (root / f"pairs-{name}.jsonl").write_text(good + "\n" + json.dumps(row, ensure_ascii=False) + "\n", "utf-8")
    write_beir(root / "beir", RetrievalSet({"d1": "北京", "d2": "天气"}, {"q1": "北京"}, {"q1": {"d1": 1}}))
    with open(root / "beir" / "qrels" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("q1\td9\t1\n")
    assert main(f"index {root}/plain --input {root}/texts.txt --out {root}/idx".split()) == 0
    vectors = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    VectorIndex.build(
        vectors, ["1", "2"], ["a", "b"], {"model": f"{root}/plain", "fingerprint": "x", "pooling": "mean"}
    ).save(root / "idx-8")


P = "pretrain --out {r}/p --corpus {r}/corpus.txt --cache-dir {r}/cache --preset bert-tiny-chinese --steps 2"
INIT = "pretrain --out {r}/p --corpus {r}/corpus.txt --cache-dir {r}/cache --steps 2 --init {r}/plain"
F = "finetune --task sentiment --model {r}/plain --out {r}/f"
D = "distill --out {r}/d --corpus {r}/corpus.txt --cache-dir {r}/cache --steps 2"
RUN = "--corpus {r}/docs.txt --cache-dir {r}/cache --preset bert-tiny-chinese --batch-size 4 --vocab-size 100 "
RUN += "--save-every 2 --eval-every 100 --dropout 0"
ET = "embed-train --model {r}/plain --out {r}/et --train"
CASES = [  # (class of case, what the user did, the command, what the one stderr line says)
    (
        "an output path that would destroy something",
        "predict writing over its input",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/texts.txt",
        "is the --input file",
    ),
    (
        "a data file of the wrong encoding or shape",
        "predict on a file that is not UTF-8",
        "predict --model {r}/clf --input {r}/latin1.txt --output {r}/o.jsonl",
        "latin1.txt: line 2 is not UTF-8",
    ),
    (
        "a number out of range or not a number",
        "predict --batch-size 0",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/o.jsonl --batch-size 0",
        "--batch-size must be in 1..65,536, got 0",
    ),
    (
        "an output path that would destroy something",
        "an output path under a file",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/texts.txt/o.jsonl",
        "texts.txt",
    ),
    (
        "a text argument that is not UTF-8",
        "a command-line text that is not UTF-8",
        "tokenize \udcff\udcfe --model {r}/plain",
        "is not valid UTF-8",
    ),
    (
        "a number the model cannot honour",
        "fill-mask --top-k past the vocabulary",
        "fill-mask {r}/mlm 北[MASK] --top-k 100000",
        "--top-k must be in 1..",
    ),
    (
        "a number the model cannot honour",
        "fill-mask with [MASK] past the length limit",
        "fill-mask {r}/mlm " + "好" * 300 + "[MASK]",
        "past the model's limit of 64 tokens",
    ),
    (
        "an empty text",
        "similarity of an empty text",
        "similarity {r}/plain '' hi",
        "text 1 is empty",
    ),
    (
        "a word that is not there",
        "similarity --word naming a word one text does not hold",
        "similarity {r}/plain 我们今天开会 今天很好 --word 开会",
        "'开会' does not occur in '今天很好'",
    ),
    (
        "a word that is not there",
        "word2vec neighbours of a word outside the vocabulary",
        "word2vec neighbours {r}/w2v/vectors.bin 上海",
        "'上海' is not in the vocabulary",
    ),
    (
        "a number out of range or not a number",
        "word2vec train --window 0",
        "word2vec train --out {r}/w --corpus {r}/corpus.txt --window 0",
        "--window must be at least 1, got 0",
    ),
    (
        "an output folder that holds a run or a model",
        "elmo finetune into a folder that holds a fine-tuned run",
        "elmo finetune --model {r}/elmo/model --task sentiment --out {r}/elmo-ft",
        "already holds a fine-tuned run",
    ),
    (
        "a number the model cannot honour",
        "attention --layer past the model's layers",
        "attention {r}/plain 今天天气很好 --out {r}/att --layer 3",
        "--layer 3: the model has 2 layers, numbered 1..2",
    ),
    (
        "a number the model cannot honour",
        "attention --head 0",
        "attention {r}/plain 今天天气很好 --out {r}/att --head 0",
        "--head 0: the model has 4 heads, numbered 1..4",
    ),
    (
        "a number the model cannot honour",
        "attention on a text longer than the model's positions",
        "attention {r}/plain " + "好" * 70 + " --out {r}/att",
        "the text is 72 tokens with [CLS]/[SEP] but",
    ),
    (
        "a number the model cannot honour",
        "attention --pad-to shorter than the text",
        "attention {r}/plain 今天天气很好 --out {r}/att --pad-to 3",
        "--pad-to 3: must be from the text's 8 tokens to the model's 64 positions",
    ),
    (
        "an empty text",
        "attention on an empty text",
        "attention {r}/plain ' ' --out {r}/att",
        "the text is empty",
    ),
    (
        "an output path that would destroy something",
        "attention --out naming a file",
        "attention {r}/plain 今天 --out {r}/texts.txt",
        "--out",
    ),
    (
        "a number out of range or not a number",
        "tokenizer train --vocab-size 0",
        "tokenizer train {r}/corpus.txt --out {r}/vocab0 --vocab-size 0",
        "--vocab-size must be in 6..1,000,000, got 0",
    ),
    (
        "a number out of range or not a number",
        "tokenizer train --min-frequency -1",
        "tokenizer train {r}/corpus.txt --out {r}/v --min-frequency -1",
        "--min-frequency must be 0 or more",
    ),
    (
        "a number out of range or not a number",
        "pretrain --dupe-factor 0",
        P + " --dupe-factor 0",
        "--dupe-factor must be in 1..1000, got 0",
    ),
    (
        "an output folder that holds a run or a model",
        "pretrain into an existing run",
        "pretrain --out {r}/old-run --corpus {r}/corpus.txt --steps 1",
        "already holds a pretraining run (metrics.jsonl); pass --resume",
    ),
    (
        "a damaged model folder",
        "config.json with layer_norm_eps -1",
        "params {r}/bad-eps",
        "'layer_norm_eps' must be a small positive number",
    ),
    (
        "a damaged model folder",
        "config.json with a NaN initializer_range",
        "params {r}/bad-init",
        "'initializer_range' must be a finite",
    ),
    (
        "a number out of range or not a number",
        "pretrain --seed -1",
        "pretrain --out {r}/neg --corpus {r}/corpus.txt --seed -1 --steps 1 --cache-dir {r}/cache",
        "--seed must be in 0..4,294,967,295, got -1",
    ),
    (
        "a number out of range or not a number",
        "finetune --seeds with a negative one",
        "finetune --task sentiment --model {r}/plain --out {r}/s --seeds 0 -2",
        "--seeds must be in 0..",
    ),
    (
        "a flag the mode ignores",
        "params --heads on a folder",
        "params {r}/plain --heads mlm",
        "--heads applies to a preset",
    ),
    (
        "a number out of range or not a number",
        "params --num-labels 0",
        "params bert-base --heads classifier --num-labels 0",
        "--num-labels 0: must be at least 1",
    ),
    (
        "an output folder that holds a run or a model",
        "tokenizer train into a model folder",
        "tokenizer train {r}/corpus.txt --out {r}/plain",
        "already holds a tokenizer or model (config.json, vocab.txt, tokenizer.json)",
    ),
    (
        "a number out of range or not a number",
        "tokenizer train --vocab-size past any vocabulary",
        "tokenizer train {r}/corpus.txt --out {r}/big --vocab-size 99999999999",
        "--vocab-size must be in 6..1,000,000, got 99999999999",
    ),
    (
        "an empty text",
        "embed an empty file",
        "embed {r}/plain --input {r}/empty.txt --output {r}/e.npy",
        "no text to embed",
    ),
    (
        "a number out of range or not a number",
        "predict --max-seq-length 0",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/o.jsonl --max-seq-length 0",
        "--max-seq-length must be in 3..",
    ),
    (
        "a number the model cannot honour",
        "predict --stride past the window",
        "predict --model {r}/ner --input {r}/texts.txt --output {r}/o.jsonl --stride 1000",
        "--stride must be in 1..62",
    ),
    (
        "an output folder that holds a run or a model",
        "finetune into an existing run",
        "finetune --task sentiment --model {r}/plain --out {r}/old-finetune --lr 1e-3",
        "already holds a run (metrics.jsonl, summary.json); pass --overwrite",
    ),
    (
        "an output folder that holds a run or a model",
        "finetune into a model folder",
        "finetune --task sentiment --model {r}/plain --out {r}/clf",
        "is a model folder",
    ),
    (
        "an output folder that holds a run or a model",
        "baseline into a fine-tuning run",
        "baseline --task sentiment --out {r}/old-finetune",
        "pass --overwrite",
    ),
    (
        "a number out of range or not a number",
        "finetune --warmup -1",
        "finetune --task sentiment --model {r}/plain --out {r}/ft --warmup -1 --lr 1e-3",
        "--warmup must be 0 or more, got -1",
    ),
    (
        "a number out of range or not a number",
        "pretrain --lr inf",
        P + " --lr inf",
        "--lr: 'inf' is not a finite number",
    ),
    (
        "a number out of range or not a number",
        "finetune --lr inf",
        F + " --lr inf",
        "--lr: 'inf' is not a finite number",
    ),
    (
        "a number out of range or not a number",
        "pretrain --lr past AdamW's sense",
        P + " --lr 1e30",
        "--lr must be in (0, 1], got 1e30",
    ),
    (
        "a number out of range or not a number",
        "finetune --lr nan",
        F + " --lr nan",
        "--lr: 'nan' is not a finite number",
    ),
    (
        "a number out of range or not a number",
        "pretrain --max-seq-length 0",
        P + " --max-seq-length 0",
        "--max-seq-length must be in 8..",
    ),
    (
        "a number out of range or not a number",
        "pretrain --warmup -3",
        P + " --warmup -3",
        "--warmup must be 0 or more, got -3",
    ),
    (
        "a number out of range or not a number",
        "pretrain --warmup nan",
        P + " --warmup nan",
        "--warmup: 'nan' is not a finite number",
    ),
    (
        "a number out of range or not a number",
        "pretrain --warmup inf",
        P + " --warmup inf",
        "--warmup: 'inf' is not a finite number",
    ),
    (
        "a number out of range or not a number",
        "pretrain --hidden-size 0",
        P + " --hidden-size 0",
        "--hidden-size must be in 1..",
    ),
    (
        "a number out of range or not a number",
        "pretrain --num-hidden-layers 0",
        P + " --num-hidden-layers 0",
        "--num-hidden-layers must be in 1..",
    ),
    (
        "a number out of range or not a number",
        "pretrain --seed past 2**32",
        P + " --seed 99999999999999999999",
        "--seed must be in 0..4,294,967,295",
    ),
    (
        "a number out of range or not a number",
        "pretrain --steps 1e3",
        P.replace(" --steps 2", "") + " --steps 1e3",
        "--steps: '1e3' is not a whole number",
    ),
    (
        "a number out of range or not a number",
        "pretrain --generator-size 5",
        P + " --generator-size 5",
        "--generator-size must be in (0, 1]",
    ),
    (
        "a number out of range or not a number",
        "a model too big for the machine",
        P + " --hidden-size 65536",
        "training it needs at least",
    ),
    (
        "a number out of range or not a number",
        "--phases longer than the position table",
        P.replace(" --steps 2", "") + " --phases 32:0.5 100000:0.5",
        "--phases' longest length 100000 is more than the model's max_position_embeddings",
    ),
    (
        "a number out of range or not a number",
        "finetune --lr 1e-3 0.001",
        F + " --lr 1e-3 0.001",
        "--lr 0.001 is given twice",
    ),
    (
        "a number out of range or not a number",
        "finetune --lr of one folder name",
        F + " --lr 1e-4 1.0000001e-4",
        "would both run in",
    ),
    (
        "a number out of range or not a number",
        "finetune --lr grid with a 0",
        F + " --lr 1e-3 0",
        "--lr must be in (0, 1], got 0",
    ),
    (
        "a number out of range or not a number",
        "finetune --seeds 0 0",
        F + " --seeds 0 0",
        "--seeds 0 is given twice",
    ),
    (
        "a number out of range or not a number",
        "finetune --seeds past 2**32",
        F + " --seeds 99999999999999999999",
        "--seeds must be in 0..",
    ),
    (
        "a number out of range or not a number",
        "finetune --null-threshold nan",
        F + " --task qa --null-threshold nan",
        "--null-threshold: 'nan' is not a finite",
    ),
    (
        "a number out of range or not a number",
        "finetune --epochs 0",
        F + " --epochs 0",
        "--epochs must be in 1..",
    ),
    (
        "a number out of range or not a number",
        "finetune --dropout 1",
        F + " --dropout 1",
        "--dropout must be in [0, 1)",
    ),
    (
        "a flag the mode ignores",
        "pretrain --init with --num-hidden-layers",
        INIT + " --num-hidden-layers 2",
        "--num-hidden-layers: --init continues",
    ),
    (
        "a flag the mode ignores",
        "pretrain --init with --hidden-size",
        INIT + " --hidden-size 64",
        "--hidden-size: --init continues",
    ),
    (
        "a flag the mode ignores",
        "pretrain --init with --tokenizer",
        INIT + " --tokenizer {r}/plain",
        "--tokenizer: --init continues",
    ),
    (
        "a flag the mode ignores",
        "pretrain --init with --vocab-size",
        INIT + " --vocab-size 100",
        "--vocab-size: --init continues",
    ),
    (
        "a flag the mode ignores",
        "pretrain --init with --preset",
        P + " --init {r}/plain",
        "--preset: --init continues",
    ),
    ("a flag the mode ignores", "finetune --crf on a classification task", F + " --crf", "--crf is for tagging tasks"),
    (
        "a flag the mode ignores",
        "finetune --null-threshold on a classification task",
        F + " --null-threshold 1.5",
        "--null-threshold is for qa tasks",
    ),
    ("a flag the mode ignores", "finetune --stride on a classification task", F + " --stride 8", "--stride is for"),
    (
        "a flag the mode ignores",
        "pretrain --generator-size on a BERT recipe",
        P + " --generator-size 0.5",
        "--generator-size sizes ELECTRA's generator",
    ),
    (
        "a flag the mode ignores",
        "pretrain --dupe-factor with dynamic masking",
        P.replace("bert-tiny-chinese", "roberta-mini-chinese") + " --dupe-factor 3",
        "--dupe-factor counts static masked copies",
    ),
    (
        "a flag the mode ignores",
        "pretrain --vocab-size with --tokenizer",
        P + " --tokenizer {r}/plain --vocab-size 100",
        "--vocab-size sizes a vocabulary trained",
    ),
    (
        "an output folder that holds a run or a model",
        "pretrain --out a model folder",
        P.replace("{r}/p ", "{r}/plain "),
        "is a model folder (config.json)",
    ),
    (
        "a --resume that cannot continue exactly",
        "--resume into a finished run without checkpoints",
        "pretrain --out {r}/no-ckpt --resume --steps 4 " + RUN,
        "nothing to resume from (no checkpoint was written)",
    ),
    (
        "a --resume that cannot continue exactly",
        "--resume where every checkpoint is damaged",
        "pretrain --out {r}/damaged --resume --steps 8 " + RUN,
        "every checkpoint is damaged",
    ),
    (
        "a --resume that cannot continue exactly",
        "--resume --steps below the run's",
        "pretrain --out {r}/run5 --resume --steps 3 " + RUN,
        "--steps 3: the run in",
    ),
    (
        "a --resume that cannot continue exactly",
        "--resume with another --preset",
        "pretrain --out {r}/run5 --resume --steps 8 " + RUN.replace("bert-tiny", "bert-mini"),
        "was started with --preset bert-tiny-chinese, not bert-mini-chinese",
    ),
    (
        "a --resume that cannot continue exactly",
        "--resume on another corpus",
        "pretrain --out {r}/run5 --resume --steps 8 " + RUN.replace("docs.txt", "texts.txt"),
        "was started with --corpus",
    ),
    (
        "a bad entity file",
        "pretrain --entities FILE that is empty",
        P + " --recipe ernie --entities {r}/empty.txt",
        "the entity file has no entities",
    ),
    (
        "a bad entity file",
        "pretrain --entities FILE that is not UTF-8",
        P + " --recipe ernie --entities {r}/latin1.txt",
        "not UTF-8",
    ),
    (
        "a bad entity file",
        "pretrain --entities FILE with a second column",
        P + " --masking ernie-entity --entities {r}/entities-tab.txt",
        "tab-separated second column",
    ),
    (
        "a flag combination that cannot work",
        "pretrain --masking ernie-entity on a corpus without tags",
        P + " --masking ernie-entity",
        "--masking ernie-entity needs --entities FILE",
    ),
    (
        "a flag combination that cannot work",
        "pretrain an ERNIE 2.0 stage naming an unknown task",
        "pretrain --out {r}/p --corpus {r}/corpus.txt --cache-dir {r}/cache --recipe ernie-2.0 --steps 2 "
        "--entities {r}/corpus.txt --tasks knowledge knowledge,tdr,order",
        "--tasks: stage 2 names 'order'; a stage is tasks joined by commas from knowledge, tdr, reorder, distance",
    ),
    (
        "a flag combination that cannot work",
        "pretrain --tasks with a recipe that has no tasks",
        P + " --tasks knowledge",
        "--tasks names ERNIE 2.0's stages; this run's recipe is bert: give --recipe ernie-2.0",
    ),
    (
        "a flag combination that cannot work",
        "pretrain --recipe ernie-2.0 on a BERT",
        P + " --recipe ernie-2.0",
        "recipe ernie-2.0 trains a task embedding, which BERT models have no table for",
    ),
    (
        "a flag combination that cannot work",
        "distill a student deeper than its teacher",
        D + " --teacher {r}/mlm --student-layers 5",
        "--student-layers 5: the teacher has 2 layers; give 1 to 2",
    ),
    (
        "a flag combination that cannot work",
        "distill a TinyBERT student wider than its teacher",
        D + " --teacher {r}/mlm --method tinybert --student-hidden 64",
        "--student-hidden 64: wider than the teacher (32)",
    ),
    (
        "a model folder that is not the kind asked for",
        "distill --method distilbert from a teacher without an MLM head",
        D + " --teacher {r}/plain",
        "--method distilbert distils the teacher's masked-LM predictions, and this folder has no MLM head",
    ),
    (
        "a model folder that is not the kind asked for",
        "distill --task with a teacher fine-tuned on other labels",
        "distill --task peoples-daily-ner --teacher {r}/ner --out {r}/d",
        "predicts labels O, B-LOC, I-LOC; --task peoples-daily-ner has O, B-LOC, I-LOC, B-ORG",
    ),
    (
        "a model folder that is not the kind asked for",
        "distill --task into a student of another vocabulary",
        "distill --task sentiment --teacher {r}/clf --student {r}/other-vocab --out {r}/d",
        "other-vocab: its vocabulary is not the teacher's",
    ),
    (
        "a flag combination that cannot work",
        "distill --task --method tinybert without a --student",
        "distill --task sentiment --teacher {r}/clf --method tinybert --out {r}/d",
        "--method tinybert with --task distils a general-distilled student: give --student DIR",
    ),
    ("an empty text", "generate from an empty prompt", "generate {r}/gpt ''", "the prompt is empty"),
    (
        "a number the model cannot honour",
        "generate past the model's positions",
        "generate {r}/gpt 今天 --max-new-tokens 100",
        "its 3 tokens and --max-new-tokens 100 pass the model's 64 positions; give --max-new-tokens 61 or less",
    ),
    ("a number out of range or not a number", "generate --top-p 1.5", "generate {r}/gpt 今天 --top-p 1.5", "--top-p"),
    (
        "a number out of range or not a number",
        "generate --temperature 0",
        "generate {r}/gpt 今天 --temperature 0",
        "--temperature must be more than 0",
    ),
    (
        "a model folder that is not the kind asked for",
        "generate from a BERT folder",
        "generate {r}/mlm 今天",
        "a masked-LM (BERT-style) model without a left-to-right language-model head",
    ),
    (
        "a model folder that is not the kind asked for",
        "fill-mask with a GPT-2 folder",
        "fill-mask {r}/gpt 北[MASK]",
        "reads left to right: `bertkit generate` continues a text",
    ),
    (
        "a model folder that is not the kind asked for",
        "distill a GPT-2 teacher",
        D + " --teacher {r}/gpt --method tinybert",
        "a GPT-2 teacher reads left to right",
    ),
    (
        "a model folder that is not the kind asked for",
        "pretrain a masked LM from a GPT-2 folder",
        INIT.replace("{r}/plain", "{r}/gpt") + " --recipe bert",
        "GPT-2 has no masked-LM (mlm) head",
    ),
    (
        "a data file of the wrong encoding or shape",
        "embed-train on a pairs line without `positive`",
        ET + " {r}/pairs-no-positive.jsonl",
        "pairs-no-positive.jsonl: line 2: no column 'positive'",
    ),
    (
        "an empty text",
        "embed-train on a pairs line with an empty query",
        ET + " {r}/pairs-empty-query.jsonl",
        "pairs-empty-query.jsonl: line 2: column 'query' is empty",
    ),
    (
        "a data file of the wrong encoding or shape",
        "embed-train with `negatives` that is not a list",
        ET + " {r}/pairs-negatives-str.jsonl",
        "pairs-negatives-str.jsonl: line 2: field 'negatives' should be a list of non-empty strings",
    ),
    (
        "a model folder that is not the kind asked for",
        "search an index with another model",
        "search {r}/idx --query 北京 --model {r}/other-vocab",
        "the index was built with another model",
    ),
    (
        "a model folder that is not the kind asked for",
        "search an index of another dimension",
        "search {r}/idx-8 --query 北京",
        "holds 8-dimensional ones: search with the model it was built with",
    ),
    (
        "a data file of the wrong encoding or shape",
        "retrieval eval with qrels naming an unknown document",
        "retrieval eval --data {r}/beir --bm25 chars --out {r}/re",
        "qrels/test.tsv: line 3: document 'd9' is not in corpus.jsonl",
    ),
    (
        "a number out of range or not a number",
        "embed --threads 0",
        "embed {r}/plain --input {r}/texts.txt --output {r}/v.npy --threads 0",
        "--threads must be in 1..1024, got 0",
    ),
    (
        "a flag combination that cannot work",
        "embed on onnxruntime in bf16",
        "embed {r}/plain --input {r}/texts.txt --output {r}/v.npy --backend onnxruntime --precision bf16",
        "--backend onnxruntime runs fp32 or int8, not bf16",
    ),
    (
        "a flag combination that cannot work",
        "embed token vectors on a graph engine",
        "embed {r}/plain --input {r}/texts.txt --output {r}/v.jsonl --backend openvino --tokens",
        "--backend openvino gives sentence vectors of the last layer",
    ),
]


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind, name, command, message", CASES, ids=[c[1] for c in CASES])
def test_a_mistake_is_one_line_and_changes_nothing(folders, capsys, kind, name, command, message):
    import shlex

    before = _snapshot(folders)
    code = main(shlex.split(command.format(r=folders)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("bertkit: error:") and message in err[0], err
    assert _snapshot(folders) == before  # nothing that was there is changed, nothing half-written is left


def test_serve_answers_a_lone_surrogate_with_400(folders):
    from starlette.testclient import TestClient

    from bertkit.use.serve import create_app, load_model

    with TestClient(create_app(load_model(folders / "plain"))) as client:  # loaded: ready at once
        response = client.post("/embed", content=b'{"texts": ["ok", "\\ud800"]}')
    assert response.status_code == 400 and "lone surrogate" in response.json()["error"]


def test_config_loads_with_sane_values(folders):
    assert BertConfig.from_json(folders / "plain" / "config.json").layer_norm_eps == 1e-12


def test_overwrite_sets_the_old_run_aside_until_the_new_one_is_complete(tmp_path):
    from bertkit.finetune.loop import ASIDE, check_run_dir, replacing_run

    run = tmp_path / "run"
    (run / "seed-1" / "model").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("old\n")
    (run / "notes.txt").write_text("mine\n")
    check_run_dir(run, overwrite=True)  # the check removes nothing
    assert (run / "metrics.jsonl").read_text() == "old\n"
    with pytest.raises(RuntimeError), replacing_run(run):  # a run that fails: the old one comes back
        assert sorted(p.name for p in run.iterdir()) == [ASIDE, "notes.txt"]
        (run / "metrics.jsonl").write_text("new\n")
        raise RuntimeError("died")
    assert (run / "metrics.jsonl").read_text() == "old\n" and (run / "seed-1" / "model").is_dir()
    with replacing_run(run):  # a run that completes: only the new one is left, the user's file stays
        (run / "metrics.jsonl").write_text("new\n")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "notes.txt"]
    assert (run / "metrics.jsonl").read_text() == "new\n"
