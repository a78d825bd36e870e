"""A careless user's mistakes, across commands: each is one line on stderr naming the file, flag or field and
what to do, exit code 2, no traceback, and every file that was there before is left as it was.

The cases are the README's bad-input table; each row is a (name, arguments, message) case below.
"""

import json
import math

import pytest
from helpers import one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli import main
from bertkit.config import BertConfig
from bertkit.finetune.model import build_model, save_task_model
from bertkit.hf import build_heads, load_pretrained, save_pretrained
from bertkit.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    tok = Tokenizer.train(
        iter(["我们今天在北京开会。", "the cat sat on the mat", "好 差 一般"] * 5), vocab_size=120, min_frequency=1
    )
    plain = save_tiny_bert(root / "plain", tok)
    ckpt = load_pretrained(plain)
    save_pretrained(root / "mlm", ckpt.encoder, build_heads(ckpt.config, ["mlm"]), tok)
    clf, clf_tok = build_model(plain, "classification", ["neg", "pos"])
    save_task_model(root / "clf", clf, clf_tok)
    ner, ner_tok = build_model(plain, "tagging", ["O", "B-LOC", "I-LOC"])
    save_task_model(root / "ner", ner, ner_tok)
    (root / "empty.txt").write_text("", "utf-8")
    (root / "texts.txt").write_text("我们很好\n今天一般\n", "utf-8")
    (root / "latin1.txt").write_bytes("好\n".encode() + "caf\xe9\n".encode("latin-1"))
    (root / "corpus.txt").write_text("我们今天在北京开会。\n大家都很好！\n" * 20, "utf-8")
    run = root / "old-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "mlm_loss": 9.0}\n', "utf-8")
    (run / "train_config.json").write_text("{}\n", "utf-8")
    old = root / "old-finetune"
    old.mkdir()
    (old / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n', "utf-8")
    (old / "summary.json").write_text("{}\n", "utf-8")
    for name, key, value in (("eps", "layer_norm_eps", -1), ("init", "initializer_range", math.nan)):
        folder = root / f"bad-{name}"
        save_pretrained(folder, ckpt.encoder, {}, tok)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {key: value}), "utf-8")  # NaN as JSON's NaN
    return root


CASES = [
    (
        "predict writing over its input",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/texts.txt",
        "is the --input file",
    ),
    (
        "predict on a file that is not UTF-8",
        "predict --model {r}/clf --input {r}/latin1.txt --output {r}/o.jsonl",
        "latin1.txt: line 2 is not UTF-8",
    ),
    (
        "predict --batch-size 0",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/o.jsonl --batch-size 0",
        "--batch-size must be at least 1",
    ),
    (
        "an output path under a file",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/texts.txt/o.jsonl",
        "texts.txt",
    ),
    ("a command-line text that is not UTF-8", "tokenize \udcff\udcfe --model {r}/plain", "is not valid UTF-8"),
    ("fill-mask --top-k past the vocabulary", "fill-mask {r}/mlm 北[MASK] --top-k 100000", "--top-k must be in 1.."),
    (
        "fill-mask with [MASK] past the length limit",
        "fill-mask {r}/mlm " + "好" * 300 + "[MASK]",
        "past the model's limit of 64 tokens",
    ),
    ("similarity of an empty text", "similarity {r}/plain '' hi", "text-a is empty"),
    (
        "tokenizer train --vocab-size 0",
        "tokenizer train {r}/corpus.txt --out {r}/vocab0 --vocab-size 0",
        "must be more than 5",
    ),
    (
        "tokenizer train --min-frequency -1",
        "tokenizer train {r}/corpus.txt --out {r}/v --min-frequency -1",
        "--min-frequency must be 0 or more",
    ),
    (
        "pretrain --dupe-factor 0",
        "pretrain --out {r}/dupe --corpus {r}/corpus.txt --dupe-factor 0 --steps 1 "
        "--cache-dir {r}/cache --preset bert-tiny-chinese",
        "--dupe-factor must be at least 1",
    ),
    (
        "pretrain into an existing run",
        "pretrain --out {r}/old-run --corpus {r}/corpus.txt --steps 1",
        "already holds a pretraining run (metrics.jsonl); pass --resume",
    ),
    ("config.json with layer_norm_eps -1", "params {r}/bad-eps", "'layer_norm_eps' must be a small positive number"),
    ("config.json with a NaN initializer_range", "params {r}/bad-init", "'initializer_range' must be a finite"),
    (
        "pretrain --seed -1",
        "pretrain --out {r}/neg --corpus {r}/corpus.txt --seed -1 --steps 1 --cache-dir {r}/cache",
        "--seed must be in 0..4294967295",
    ),
    (
        "finetune --seeds with a negative one",
        "finetune --task sentiment --model {r}/plain --out {r}/s --seeds 0 -2",
        "--seeds must be in 0..",
    ),
    ("params --heads on a folder", "params {r}/plain --heads mlm", "--heads applies to a preset"),
    (
        "params --num-labels 0",
        "params bert-base --heads classifier --num-labels 0",
        "--num-labels 0: must be at least 1",
    ),
    (
        "tokenizer train into a model folder",
        "tokenizer train {r}/corpus.txt --out {r}/plain",
        "already holds a tokenizer or model (config.json, vocab.txt, tokenizer.json)",
    ),
    (
        "tokenizer train --vocab-size past any vocabulary",
        "tokenizer train {r}/corpus.txt --out {r}/big --vocab-size 99999999999",
        "is more than 1,000,000",
    ),
    ("embed an empty file", "embed {r}/plain --input {r}/empty.txt --output {r}/e.npy", "no text to embed"),
    (
        "predict --max-seq-length 0",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/o.jsonl --max-seq-length 0",
        "--max-seq-length 0 leaves no room",
    ),
    (
        "predict --stride past the window",
        "predict --model {r}/ner --input {r}/texts.txt --output {r}/o.jsonl --stride 1000",
        "--stride must be in 1..62",
    ),
    (
        "finetune into an existing run",
        "finetune --task sentiment --model {r}/plain --out {r}/old-finetune --lr 1e-3",
        "already holds a run (metrics.jsonl, summary.json); pass --overwrite",
    ),
    ("finetune into a model folder", "finetune --task sentiment --model {r}/plain --out {r}/clf", "is a model folder"),
    ("baseline into a fine-tuning run", "baseline --task sentiment --out {r}/old-finetune", "pass --overwrite"),
    (
        "finetune --warmup -1",
        "finetune --task sentiment --model {r}/plain --out {r}/ft --warmup -1 --lr 1e-3",
        "--warmup must be 0 or more",
    ),
]


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name, command, message", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_and_changes_nothing(folders, capsys, name, command, message):
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


def test_finetune_overwrite_replaces_only_the_old_run(tmp_path, folders):
    from bertkit.finetune.loop import check_run_dir

    run = tmp_path / "run"
    (run / "seed-1" / "model").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "notes.txt").write_text("mine\n")
    check_run_dir(run, overwrite=True, remove=False)  # the early check removes nothing
    assert (run / "metrics.jsonl").exists()
    check_run_dir(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
