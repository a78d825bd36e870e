"""Careless files: damaged model folders, data files of the wrong shape or encoding, output paths that are folders,
flag values the tokenizer cannot honour. Each is one stderr line naming the file, line or field, exit code 2, and
every file under the fixture's root left as it was (see `helpers.check_mistake`).
"""

import json
import shlex

import pytest
import torch
from helpers import check_mistake, model_folders, one_thread  # noqa: F401 - an autouse fixture
from safetensors.torch import load_file, save_file

from bertkit.bpe import ByteLevelBPETokenizer
from bertkit.config import BertConfig
from bertkit.errors import BertkitError, CheckpointError, ConfigError, DataError
from bertkit.finetune.model import load_task_model
from bertkit.finetune.predict import predict_texts, read_predictions, write_predictions
from bertkit.finetune.readers import read_text_examples
from bertkit.hf import load_pretrained
from bertkit.tokenizer import Tokenizer

QUERY = "encoder.layer.0.attention.self.query.weight"


def _copy_model(src, dst, config=None, weights=None):
    """A copy of model folder `src`, its config.json updated with `config` and its tensors passed through
    `weights` (a function of the state dict, in place)."""
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    if config is not None:
        data = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(data | config), "utf-8")
    if weights is not None:
        state = load_file(dst / "model.safetensors")
        weights(state)
        save_file(state, dst / "model.safetensors")
    return dst


def _set(name, fn):
    def edit(state):
        state[name] = fn(state[name])

    return edit


def _nan(t):
    t = t.clone()
    t[0, 0] = float("nan")
    return t


def _lines(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-files")
    plain = model_folders(root)
    bpe = ByteLevelBPETokenizer.train(["the cat sat on the mat", "我们今天在北京开会"] * 20, vocab_size=300)
    bpe.save(root / "bpe")

    # damaged model folders
    _copy_model(root / "mlm", root / "nan", weights=_set(f"bert.{QUERY}", _nan))
    _copy_model(plain, root / "inf", weights=_set("pooler.dense.bias", lambda t: t.fill_(float("inf"))))
    _copy_model(plain, root / "int", weights=_set(QUERY, lambda t: t.long()))
    (_copy_model(plain, root / "empty-config") / "config.json").write_text("{}\n", "utf-8")
    _copy_model(root / "clf", root / "list-labels", config={"id2label": ["neg", "pos"]})
    _copy_model(root / "clf", root / "same-labels", config={"id2label": {"0": "neg", "1": "neg"}})
    _copy_model(plain, root / "many-labels", config={"num_labels": 10**10})
    _copy_model(plain, root / "text-dropout", config={"hidden_dropout_prob": "0.1"})
    weights = _copy_model(plain, root / "cut") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (_copy_model(plain, root / "pickle") / "model.safetensors").unlink()
    (root / "pickle" / "pytorch_model.bin").write_bytes(b"garbage, not a pickle\n")
    (_copy_model(root / "clf", root / "bad-length") / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": "long"}), "utf-8"
    )
    vocab = _copy_model(plain, root / "big-vocab") / "vocab.txt"  # another model's vocabulary
    (root / "big-vocab" / "tokenizer.json").unlink()
    vocab.write_text(vocab.read_text() + "".join(f"word{i}\n" for i in range(200)), "utf-8")

    # data files
    (root / "texts.txt").write_text("我们很好\n今天一般\n", "utf-8")
    (root / "ok.csv").write_text("text,label\n好,pos\n差,neg\n", "utf-8")
    (root / "one-class.csv").write_text("text,label\n好,pos\n很好,pos\n", "utf-8")
    (root / "joined.csv").write_text("text,label\n好,pos\n差,neg\ntext,label\n一般,pos\n", "utf-8")
    (root / "twice.tsv").write_text("text\ttext\tlabel\n好\t差\tpos\n", "utf-8")
    (root / "open-quote.csv").write_text('text,label\n"好,pos\n差,neg\n', "utf-8")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (root / "pairs.csv").write_text("text,pair,label\n好,很好,pos\n差,很差,neg\n", "utf-8")
    (root / "flat.csv").write_text("text,label\n好,1.5\n差,1.50\n", "utf-8")
    (root / "zeros.txt").write_bytes(bytes(2000))  # valid UTF-8, and no text
    (root / "utf16.csv").write_text("text,label\ngood,pos\nbad,neg\n", "utf-16-le")  # no byte-order mark: valid UTF-8
    (root / "ok.conll").write_text("北 B-LOC\n京 I-LOC\n好 O\n\n", "utf-8")
    _lines(root / "no-entity.jsonl", [{"tokens": ["北", "京"], "tags": ["O", "O"]}])
    (root / "folder.csv").mkdir()

    # predictions files for `compare`
    _lines(root / "p-clf.jsonl", [{"gold": "pos", "predicted": "neg"}, {"gold": "neg", "predicted": "neg"}])
    _lines(root / "p-tags.jsonl", [{"gold": ["B-LOC", "O"], "predicted": ["O", "O"]}] * 2)
    _lines(root / "p-shape.jsonl", [{"gold": {"label": "pos"}, "predicted": 3}])
    _lines(root / "p-lengths.jsonl", [{"gold": ["B-LOC", "O"], "predicted": ["O"]}])
    (root / "p-binary.jsonl").write_bytes(bytes(range(128, 256)))
    (root / "p-text.jsonl").write_text("gold,predicted\npos,neg\n", "utf-8")
    (root / "p-empty.jsonl").write_text("", "utf-8")
    _lines(root / "p-topic.jsonl", [{"gold": "sport", "predicted": "sport"}, {"gold": "news", "predicted": "sport"}])

    # outputs that are folders
    for name in ("out-folder", "vectors.npy", "model.onnx"):
        (root / name).mkdir()
    return root


C = "--task classification --dev {r}/ok.csv"
CASES = [  # (class of case, what the user did, the command, what the one stderr line says)
    (
        "a damaged model folder",
        "fill-mask with NaN weights",
        "fill-mask {r}/nan 我[MASK]",
        f"nan/model.safetensors: tensor '{QUERY}' holds NaN or infinite values; the model is damaged",
    ),
    ("a damaged model folder", "infinite weights", "params {r}/inf", "'pooler.dense.bias' holds NaN or infinite"),
    ("a damaged model folder", "int64 weights", "params {r}/int", f"tensor '{QUERY}' has dtype int64"),
    (
        "a damaged model folder",
        "a config.json of {}",
        "params {r}/empty-config",
        "config.json: has no model_type / vocab_size / hidden_size",
    ),
    (
        "a damaged model folder",
        "id2label as a list",
        "predict --model {r}/list-labels --input {r}/texts.txt --output {r}/o.jsonl",
        "list-labels/config.json: config field 'id2label' should be an object of ids to names",
    ),
    (
        "a damaged model folder",
        "id2label naming one label twice",
        "predict --model {r}/same-labels --input {r}/texts.txt --output {r}/o.jsonl",
        "config field 'id2label' names label 'neg' twice",
    ),
    (
        "a damaged model folder",
        "num_labels past any label set",
        "params {r}/many-labels",
        "config field 'num_labels' should be a whole number in 1..100,000",
    ),
    (
        "a damaged model folder",
        "a dropout written as a string",
        "params {r}/text-dropout",
        "config field 'hidden_dropout_prob' should be a number",
    ),
    ("a damaged model folder", "a truncated safetensors file", "params {r}/cut", "cut/model.safetensors: cannot read"),
    (
        "a damaged model folder",
        "a pytorch_model.bin that is not a pickle",
        "params {r}/pickle",
        "pytorch_model.bin: cannot read PyTorch weights",
    ),
    (
        "a damaged model folder",
        "a model_max_length that is not a number",
        "predict --model {r}/bad-length --input {r}/texts.txt --output {r}/o.jsonl",
        "tokenizer_config.json: model_max_length should be a whole number",
    ),
    (
        "a damaged model folder",
        "a vocab.txt bigger than the model's embedding",
        "fill-mask {r}/big-vocab 我[MASK]",
        "tokens but the model's embedding has vocab_size=",
    ),
    (
        "a damaged model folder",
        "--model naming the weights file",
        "params {r}/plain/model.safetensors",
        "model.safetensors is a file; give the model folder that holds it",
    ),
    (
        "an output path that would destroy something",
        "predict --output a file of the model",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/clf/config.json",
        "is a file of the model folder",
    ),
    (
        "a data file of the wrong encoding or shape",
        "predict on a file of NUL bytes",
        "predict --model {r}/clf --input {r}/zeros.txt --output {r}/o.jsonl",
        "zeros.txt: line 1 holds NUL bytes",
    ),
    (
        "a data file of the wrong encoding or shape",
        "a UTF-16 training file",
        f"baseline {C} --train {{r}}/utf16.csv",
        "utf16.csv: line 1 holds NUL bytes (a binary or UTF-16 file?)",
    ),
    (
        "a data file of the wrong encoding or shape",
        "predict on a CoNLL file",
        "predict --model {r}/ner --input {r}/ok.conll --output {r}/o.jsonl",
        "ok.conll: a .conll file holds labelled data; predict reads texts",
    ),
    (
        "training data a model cannot learn from",
        "a regression whose targets never vary",
        "baseline --task regression --train {r}/flat.csv --dev {r}/flat.csv",
        "flat.csv: every example has the value 1.5; a regression needs targets that vary",
    ),
    (
        "an output path that is a folder",
        "predict --output a folder",
        "predict --model {r}/clf --input {r}/texts.txt --output {r}/out-folder",
        "--output {r}/out-folder is a folder; give a file path",
    ),
    (
        "an output path that is a folder",
        "embed --output a folder named like a file",
        "embed {r}/plain --input {r}/texts.txt --output {r}/vectors.npy",
        "--output {r}/vectors.npy is a folder; give a file path",
    ),
    (
        "an output path that is a folder",
        "export --onnx a folder",
        "export {r}/plain --onnx {r}/model.onnx",
        "--onnx {r}/model.onnx is a folder; give a file path",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare a classifier with a tagger",
        "compare {r}/p-clf.jsonl {r}/p-tags.jsonl",
        "are predictions of different tasks (classification vs tagging)",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare two classifiers of different label sets",
        "compare {r}/p-clf.jsonl {r}/p-topic.jsonl",
        "are predictions of different tasks: their gold labels",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare a binary file",
        "compare {r}/p-binary.jsonl {r}/p-clf.jsonl",
        "p-binary.jsonl, line 1: not UTF-8",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare a CSV file",
        "compare {r}/p-text.jsonl {r}/p-clf.jsonl",
        "p-text.jsonl, line 1: not a prediction line: not JSON",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare JSON of the wrong shape",
        "compare {r}/p-shape.jsonl {r}/p-clf.jsonl",
        "p-shape.jsonl, line 1: not a prediction line",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare tags of two lengths",
        "compare {r}/p-lengths.jsonl {r}/p-tags.jsonl",
        "p-lengths.jsonl, line 1: 2 gold tags but 1 predicted",
    ),
    (
        "a data file of the wrong encoding or shape",
        "compare an empty file",
        "compare {r}/p-clf.jsonl {r}/p-empty.jsonl",
        "p-empty.jsonl: empty file",
    ),
    (
        "training data a model cannot learn from",
        "baseline on one class",
        "baseline --task classification --train {r}/one-class.csv",
        "one-class.csv: every example has label 'pos'; a classifier needs at least two classes",
    ),
    (
        "training data a model cannot learn from",
        "finetune on one class",
        "finetune --task classification --model {r}/plain --out {r}/ft --train {r}/one-class.csv",
        "one-class.csv: every example has label 'pos'; a classifier needs at least two classes",
    ),
    (
        "training data a model cannot learn from",
        "baseline --max-train-examples 1",
        f"baseline {C} --train {{r}}/ok.csv --max-train-examples 1",
        "--max-train-examples 1 (the first training examples): every example has label 'pos'",
    ),
    (
        "training data a model cannot learn from",
        "a tagger's data without entities",
        "baseline --task ner --train {r}/no-entity.jsonl --dev {r}/ok.conll",
        "no-entity.jsonl: every tag is 'O'",
    ),
    (
        "a data file of the wrong encoding or shape",
        "a CSV with its header repeated in the middle",
        f"baseline {C} --train {{r}}/joined.csv",
        "joined.csv: line 4 repeats the header line",
    ),
    (
        "a data file of the wrong encoding or shape",
        "a header naming one column twice",
        f"baseline {C} --train {{r}}/twice.tsv",
        "twice.tsv: line 1: the header names column 'text' twice",
    ),
    (
        "a data file of the wrong encoding or shape",
        "a CSV with a quote left open",
        f"baseline {C} --train {{r}}/open-quote.csv",
        "open-quote.csv: line 2: 1 fields but the header has 2 (text, label) (a quote left open?)",
    ),
    (
        "a data file of the wrong encoding or shape",
        "a binary training file",
        f"baseline {C} --train {{r}}/binary.csv",
        "binary.csv: not UTF-8",
    ),
    (
        "a data file of the wrong encoding or shape",
        "--train a folder",
        f"baseline {C} --train {{r}}/folder.csv",
        "is a folder",
    ),
    (
        "a flag value the tokenizer cannot honour",
        "tokenize --max-length 2",
        "tokenize hello --model {r}/plain --max-length 2",
        "--max-length 2 leaves no room for the text beside [CLS] and [SEP] (at least 3; 5 for a pair)",
    ),
    (
        "a flag value the tokenizer cannot honour",
        "tokenize a pair with --max-length 4",
        "tokenize hello --pair world --model {r}/plain --max-length 4",
        "--max-length 4 leaves no room for both texts beside [CLS] and [SEP] (at least 5 for a pair)",
    ),
    (
        "a flag value the tokenizer cannot honour",
        "tokenize a RoBERTa pair with --max-length 5",
        "tokenize hello --pair world --model {r}/bpe --max-length 5",
        "--max-length 5 leaves no room for both texts beside <s> and </s> (at least 6 for a pair)",
    ),
    (
        "a flag value the tokenizer cannot honour",
        "predict pairs with --max-seq-length 4",
        "predict --model {r}/clf --input {r}/pairs.csv --text-pair-column pair --output {r}/o.jsonl --max-seq-length 4",
        "--max-seq-length 4 leaves no room for both texts",
    ),
    (
        "a number out of range or not a number",
        "params --num-labels past any label set",
        "params bert-base --heads classifier --num-labels 99999999999",
        "--num-labels 99,999,999,999 is more than 100,000",
    ),
]


@pytest.mark.parametrize("kind, name, command, message", CASES, ids=[c[1] for c in CASES])
def test_a_bad_file_is_one_line_and_changes_nothing(root, capsys, kind, name, command, message):
    check_mistake(shlex.split(command.format(r=root)), root, capsys, message.format(r=root))


# ---- the library under the commands ------------------------------------------------------------------------


def test_load_pretrained_refuses_non_finite_and_integer_weights(root):
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        load_pretrained(root / "nan")
    with pytest.raises(CheckpointError, match="dtype int64"):
        load_pretrained(root / "int", tokenizer=False)
    assert torch.isfinite(load_pretrained(root / "mlm").encoder.layers[0].attn.query.weight).all()


def test_config_needs_its_architecture_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4}))
    with pytest.raises(ConfigError, match="has no vocab_size / num_hidden_layers / intermediate_size"):
        BertConfig.from_json(path)


def test_id2label_keys_are_ids(tmp_path):
    config = BertConfig(id2label={0: "neg", 1: "pos"})
    for id2label, message in (({"0": "a", "2": "b"}, "must map ids 0..1"), ({"0": ""}, "non-empty string")):
        (tmp_path / "config.json").write_text(json.dumps(config.to_dict() | {"id2label": id2label}))
        with pytest.raises(ConfigError, match=message):
            BertConfig.from_json(tmp_path / "config.json")


def test_old_prediction_files_still_read(tmp_path):
    path = write_predictions(tmp_path, ["pos", "neg"], ["pos", "pos"])
    assert read_predictions(path) == (["pos", "neg"], ["pos", "pos"])
    path.write_text(path.read_text() + "\n")  # a trailing blank line is no prediction
    assert len(read_predictions(path)[0]) == 2
    path.write_text('{"gold": "pos", "predicted": "pos"}\n{"gold": ["O"], "predicted": ["O"]}\n')
    with pytest.raises(BertkitError, match="line 2: a list of tags per example, but line 1 has a label"):
        read_predictions(path)


def test_a_csv_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\n好,pos\n".encode())
    assert [(ex.text, ex.label) for ex in read_text_examples(path)] == [("好", "pos")]


def test_tagging_reads_with_the_shortest_window(root):
    model, tok = load_task_model(root / "ner")
    records = predict_texts(model, tok, ["北京好"], max_seq_length=3)  # one piece per window, moved by one
    assert records[0]["text"] == "北京好"


def test_the_tokenizer_refuses_a_length_without_room_for_the_text(root):
    tok = Tokenizer.from_folder(root / "plain")
    assert tok.encode("hello", max_length=3).tokens[1:-1] != []
    with pytest.raises(BertkitError, match="max_length=2 leaves no room for the text"):
        tok.encode("hello", max_length=2)
    assert ByteLevelBPETokenizer.from_folder(root / "bpe").min_length(is_pair=True) == 6


def test_a_reader_error_names_the_line(tmp_path):
    path = tmp_path / "joined.tsv"
    path.write_text("text\tlabel\na\tx\ntext\tlabel\n", "utf-8")
    with pytest.raises(DataError, match="line 3 repeats the header line"):
        read_text_examples(path)


def test_a_crf_with_non_finite_transitions_is_refused_by_name(root, tmp_path):
    from bertkit.finetune.crf import CRF_FILE
    from bertkit.finetune.model import build_model, save_task_model

    model, tok = build_model(root / "plain", "tagging", ["O", "B-LOC", "I-LOC"], crf=True)
    save_task_model(tmp_path / "crf", model, tok)
    state = load_file(str(tmp_path / "crf" / CRF_FILE))
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(tmp_path / "crf" / CRF_FILE))
    with pytest.raises(CheckpointError, match=f"tensor '{name}' holds NaN or infinite values"):
        load_task_model(tmp_path / "crf")
