"""One entry point for every family: `bertkit.Tokenizer.from_folder` reads the tokenizer folders `transformers`
writes (RoBERTa's byte-level BPE; BERT's and ELECTRA's WordPiece) with the ids `AutoTokenizer` gives, every
command that takes a model reads a transformers-written BERT and RoBERTa folder, and a folder bertkit cannot
read is a one-line error naming the file and what to do.

The folders are built offline: a tiny vocabulary trained by bertkit or by the `tokenizers` library, wrapped in a
transformers tokenizer (from the object, or from the vocabulary files) and written by `save_pretrained`.
"""

import itertools
import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import one_thread  # noqa: F401  (tiny models: one thread)

import bertkit
from bertkit.bpe import ByteLevelBPETokenizer
from bertkit.builtin import peoples_daily_lines
from bertkit.errors import BertkitError
from bertkit.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

CHINESE = ["".join(w for w, _ in line) for line in itertools.islice(peoples_daily_lines(), 300)]
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld, naïve café — déjà vu!",
    "ALL CAPS and MiXeD case, numbers 123,456.78",
    "  two  leading spaces\tand a tab",
]
TEXTS = CHINESE[:8] + ENGLISH + ["数字 123 和 English 混合，全角：ＡＢＣ", "emoji 😀👍🏽", ""]
PAIRS = [(CHINESE[0], CHINESE[1]), (ENGLISH[0], ENGLISH[1]), (CHINESE[2], ENGLISH[2]), ("", ENGLISH[3])]
LINES = CHINESE + ENGLISH * 20
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _from_files(cls, raw, names, out):
    """A transformers tokenizer built from vocabulary files alone (`raw` holds only `names`), saved to `out`."""
    out.mkdir()
    files = out / "raw"
    files.mkdir()
    for name in names:
        shutil.copy(raw / name, files / name)
    tok = cls.from_pretrained(files)
    shutil.rmtree(files)
    tok.save_pretrained(out)
    return tok


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """family -> a tokenizer folder that transformers' save_pretrained wrote."""
    root = tmp_path_factory.mktemp("hf-tokenizers")
    ours_bpe = ByteLevelBPETokenizer.train(LINES, vocab_size=600)
    ours_bpe.save(root / "bertkit-bpe")
    ours_wp = Tokenizer.train(iter(LINES), vocab_size=800, min_frequency=1)
    ours_wp.save(root / "bertkit-wp")
    made = {}

    def save(name, tok, size):
        assert len(tok) == size, name  # an argument transformers ignored would leave an empty vocabulary
        tok.save_pretrained(root / name)
        made[name] = root / name

    save("roberta-object", transformers.RobertaTokenizerFast(tokenizer_object=ours_bpe.backend), 600)
    tok = _from_files(transformers.RobertaTokenizerFast, root / "bertkit-bpe", ["vocab.json", "merges.txt"], root / "r")
    save("roberta-files", tok, 600)
    lib = __import__("tokenizers").ByteLevelBPETokenizer()  # the tokenizers library's own trainer
    lib.train_from_iterator(LINES, vocab_size=500, special_tokens=ROBERTA_SPECIALS, show_progress=False)
    (root / "lib").mkdir()
    lib.save_model(str(root / "lib"))
    save(
        "roberta-tokenizers-lib",
        _from_files(transformers.RobertaTokenizerFast, root / "lib", ["vocab.json", "merges.txt"], root / "l"),
        500,
    )
    bert = _from_files(transformers.BertTokenizerFast, root / "bertkit-wp", ["vocab.txt"], root / "b")
    save("bert", bert, ours_wp.vocab_size)
    (root / "c").mkdir()
    shutil.copy(root / "bertkit-wp" / "vocab.txt", root / "c" / "vocab.txt")
    save(
        "bert-cased",
        transformers.BertTokenizerFast.from_pretrained(root / "c", do_lower_case=False),
        ours_wp.vocab_size,
    )
    save("bert-object", transformers.BertTokenizerFast(tokenizer_object=ours_wp.backend), ours_wp.vocab_size)
    electra = _from_files(transformers.ElectraTokenizerFast, root / "bertkit-wp", ["vocab.txt"], root / "e")
    save("electra", electra, ours_wp.vocab_size)
    return made


FAMILIES = [
    ("roberta-object", ByteLevelBPETokenizer),
    ("roberta-files", ByteLevelBPETokenizer),
    ("roberta-tokenizers-lib", ByteLevelBPETokenizer),
    ("bert", Tokenizer),
    ("bert-cased", Tokenizer),
    ("bert-object", Tokenizer),
    ("electra", Tokenizer),
]


@pytest.mark.parametrize("name,kind", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_from_folder_gives_autotokenizers_ids(folders, name, kind):
    theirs = transformers.AutoTokenizer.from_pretrained(folders[name])
    ours = bertkit.Tokenizer.from_folder(folders[name])
    assert type(ours) is kind
    for text in TEXTS:
        assert ours.encode(text).ids == theirs(text)["input_ids"], text
    for a, b in PAIRS:
        enc, ref = ours.encode(a, b), theirs(a, b)
        assert enc.ids == ref["input_ids"], (a, b)
        assert enc.token_type_ids == ref.get("token_type_ids", [0] * len(ref["input_ids"]))
        truncated = theirs(a, b, truncation="longest_first", max_length=12)["input_ids"]
        assert ours.encode(a, b, max_length=12).ids == truncated, (a, b)
    batch, ref = ours(TEXTS[:6], return_tensors=None), theirs(TEXTS[:6], padding=True)
    assert batch["input_ids"] == ref["input_ids"] and batch["attention_mask"] == ref["attention_mask"]


def test_the_public_name_knows_every_family_in_a_fresh_process(folders):
    """bertkit.Tokenizer resolves through bertkit.vocab, which imports every family; bertkit.tokenizer alone
    knows WordPiece and says what to import."""
    code = "import bertkit, sys; print(type(bertkit.Tokenizer.from_folder(sys.argv[1])).__name__)"
    out = subprocess.run([sys.executable, "-c", code, folders["roberta-files"]], capture_output=True, text=True)
    assert out.stdout.strip() == "ByteLevelBPETokenizer", out.stderr
    code = (
        "import sys; from bertkit.tokenizer import Tokenizer\n"
        "try: Tokenizer.from_folder(sys.argv[1])\n"
        "except Exception as e: print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code, folders["roberta-files"]], capture_output=True, text=True)
    assert "a BPE tokenizer" in out.stdout and "import bertkit.vocab" in out.stdout, out.stdout + out.stderr


def test_from_file_and_the_subclasses_keep_their_meaning(folders):
    assert type(Tokenizer.from_file(folders["roberta-object"] / "tokenizer.json")) is ByteLevelBPETokenizer
    assert type(Tokenizer.from_file(folders["bert"] / "tokenizer.json")) is Tokenizer
    assert type(ByteLevelBPETokenizer.from_folder(folders["roberta-files"])) is ByteLevelBPETokenizer
    from bertkit.bpe import GPT2BPETokenizer

    assert Tokenizer.families == [ByteLevelBPETokenizer, GPT2BPETokenizer]  # tests/test_gpt.py reads GPT-2's


# ---- what bertkit cannot read: one line naming the file and what to do ---------------------------------------


def _albert_folder(root):
    """A real ALBERT tokenizer folder as transformers writes it: SentencePiece (a Unigram model)."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models

    pieces = [("<pad>", 0.0), ("<unk>", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0), ("▁a", -1.0)]
    tok = transformers.AlbertTokenizerFast(tokenizer_object=RustTokenizer(models.Unigram(pieces, unk_id=1)))
    tok.save_pretrained(root)
    return root


def _mistakes(root, folders):
    cases = {}
    (root / "empty").mkdir()
    cases["empty"] = (root / "empty", "holds neither tokenizer.json nor vocab.txt (BERT) nor vocab.json + merges.txt")
    config_only = root / "config-only"
    config_only.mkdir()
    shutil.copy(folders["roberta-files"] / "tokenizer_config.json", config_only)
    cases["config only"] = (config_only, "pass the folder that save_pretrained wrote")
    no_merges = root / "no-merges"
    no_merges.mkdir()
    ByteLevelBPETokenizer.from_folder(folders["roberta-files"]).backend.model.save(str(no_merges))
    (no_merges / "merges.txt").unlink()
    cases["vocab.json, no merges.txt"] = (no_merges / "merges.txt", "needs both vocab.json and merges.txt")
    spiece = root / "spiece"
    spiece.mkdir()
    (spiece / "spiece.model").write_bytes(b"\x00")
    cases["spiece.model"] = (spiece, "holds spiece.model, a SentencePiece tokenizer")
    albert = _albert_folder(root / "albert")
    cases["albert unigram"] = (albert / "tokenizer.json", "a Unigram tokenizer, which Tokenizer does not read")
    cases["missing"] = (root / "nowhere", "does not exist")
    roberta = root / "roberta-no-mask"
    shutil.copytree(folders["roberta-files"], roberta)
    data = json.loads((roberta / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<mask>"]
    del data["model"]["vocab"]["<mask>"]
    (roberta / "tokenizer.json").write_text(json.dumps(data))
    cases["roberta without <mask>"] = (roberta / "tokenizer.json", "has no <mask>; RoBERTa needs")
    return cases


def test_a_folder_bertkit_cannot_read_is_one_line_naming_it(folders, tmp_path):
    for what, (path, message) in _mistakes(tmp_path, folders).items():
        folder = path if path.suffix == "" else path.parent
        with pytest.raises(BertkitError) as e:
            bertkit.Tokenizer.from_folder(folder)
        line = str(e.value)
        assert "\n" not in line and line.startswith(str(path)), (what, line)
        assert message in line, (what, line)


# ---- every command that takes a model reads a transformers-written BERT and RoBERTa folder --------------------


@pytest.fixture(scope="module")
def hf_models(folders, tmp_path_factory):
    """family -> a tiny masked-LM folder written by transformers (weights and tokenizer)."""
    root = tmp_path_factory.mktemp("hf-models")
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    torch.manual_seed(0)
    made = {}
    for family, name in (("roberta", "roberta-files"), ("bert", "bert")):
        tok = transformers.AutoTokenizer.from_pretrained(folders[name])
        if family == "roberta":
            config = transformers.RobertaConfig(
                vocab_size=len(tok), max_position_embeddings=66, pad_token_id=1, **small
            )
            model = transformers.RobertaForMaskedLM(config)
        else:
            model = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=len(tok), **small))
        model.save_pretrained(root / family)
        tok.save_pretrained(root / family)
        made[family] = (root / family, tok)
    (root / "texts.txt").write_text("\n".join(CHINESE[:3] + ENGLISH[:2]) + "\n", encoding="utf-8")
    (root / "corpus.txt").write_text("\n".join(CHINESE[:200]) + "\n", encoding="utf-8")
    return made, root


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_every_model_command_reads_a_transformers_folder(hf_models, family, tmp_path, capsys):
    from bertkit.cli import main

    (folder, theirs), root = hf_models[0][family], hf_models[1]
    f, mask = str(folder), theirs.mask_token
    short = ["--batch-size", "4", "--steps", "2", "--max-seq-length", "32", "--corpus", str(root / "corpus.txt")]
    preset = {"roberta": "roberta-mini-chinese", "bert": "bert-tiny-chinese"}[family]
    commands = [
        ["params", f],
        ["tokenize", CHINESE[0], "--model", f, "--pair", ENGLISH[0]],
        ["fill-mask", f, f"今天天气很{mask}。"],
        ["embed", f, "--input", str(root / "texts.txt"), "--output", str(tmp_path / "v.npy")],
        ["similarity", f, "我喜欢吃苹果", "苹果和华为哪个牌子好", "--word", "苹果"],
        ["export", f, "--onnx", str(tmp_path / "m.onnx")],
        ["finetune", "--task", "sentiment", "--model", f, "--out", str(tmp_path / "ft"), "--epochs", "1"]
        + ["--max-train-examples", "32", "--max-eval-examples", "16", "--max-seq-length", "32", "--lr", "1e-3"],
        ["predict", "--model", str(tmp_path / "ft" / "model"), "--input", str(root / "texts.txt")]
        + ["--output", str(tmp_path / "p.jsonl")],
        ["pretrain", "--out", str(tmp_path / "init"), "--init", f, *short],
        ["pretrain", "--out", str(tmp_path / "tok"), "--tokenizer", f, "--preset", preset, "--hidden-size", "32"]
        + ["--num-hidden-layers", "1", *short],
    ]
    for args in commands:
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, (args, err.strip().splitlines()[-1:])
        if args[0] == "tokenize":  # the ids the command shows are transformers'
            assert out.strip().splitlines()[-1] == "ids: " + " ".join(
                map(str, theirs(CHINESE[0], ENGLISH[0])["input_ids"])
            )
    from starlette.testclient import TestClient

    from bertkit.use.serve import ServeConfig, create_app, load_model

    with TestClient(create_app(load_model(folder), ServeConfig())) as client:
        assert client.post("/embed", json={"texts": [CHINESE[0], ENGLISH[0]]}).status_code == 200
        reply = client.post("/fill-mask", json={"text": f"今天天气很{mask}。"})
        assert reply.status_code == 200, reply.text
