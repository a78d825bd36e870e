"""The polysemy lesson: a word's vector at every layer in several contexts, against `transformers`' hidden
states; word2vec's row is 1.0 by construction; the within / across sense means; the command's files and refusals."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import check_mistake, model_folders, one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.cli import main
from bertkit.lineage.vectors import WordVectors
from bertkit.use.embed import load_embedder
from bertkit.use.polysemy import cosine_matrix, rows_of, sense_means, table

TEXTS = ["我们今天开会", "今天很好", "我们今天在北京开会"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("poly")
    model_folders(root)
    WordVectors(["今天", "北京"], np.ones((2, 4), np.float32)).save(root / "w2v.bin", binary=True)
    corpus = root / "corpus.txt"
    corpus.write_text("我们今天在北京开会。\n今天很好。\n" * 20, encoding="utf-8")
    argv = ["elmo", "train", "--out", str(root / "elmo"), "--corpus", str(corpus), "--steps", "2"]
    assert main([*argv, "--hidden-size", "8", "--embedding-size", "4", "--batch-size", "4"]) == 0
    return root


def test_word_layers_are_transformers_hidden_states(root):
    embedder = load_embedder(root / "plain")
    hf = transformers.BertModel.from_pretrained(root / "plain").eval()
    for text in TEXTS:
        got = embedder.word_layers(text, "今天")
        ids = torch.tensor(embedder.tokenize([text]))
        positions = embedder.word_positions(text, "今天")
        assert [embedder.tokenizer.id_to_token(int(ids[0, p])) for p in positions] == ["今", "天"]
        with torch.no_grad():
            hidden = hf(ids, output_hidden_states=True).hidden_states
        want = np.stack([h[0, positions].mean(0).numpy() for h in hidden])
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_static_vector_gives_one_everywhere_and_the_sense_means():
    static = np.arange(1, 5, dtype=np.float32)[None, :]
    (row,) = rows_of("word2vec", [static] * 4, ["(one vector)"])
    np.testing.assert_allclose(row.cosines, 1.0, atol=1e-6)
    cos = cosine_matrix(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]))
    same, other = sense_means(cos, ["a", "a", "b"])
    assert same == pytest.approx(cos[0, 1]) and other == pytest.approx((cos[0, 2] + cos[1, 2]) / 2)
    header, body = table([row], ["x", "y", "z", "w"], None)
    assert header[2:] == ["1–2", "1–3", "1–4", "2–3", "2–4", "3–4"] and set(body[0][2:]) == {"1.000"}


def test_the_lesson_writes_its_table_picture_and_data(root, tmp_path, capsys):
    out = tmp_path / "lesson"
    argv = ["similarity", str(root / "plain"), *TEXTS[:2], "我们今天在北京", "--word", "今天"]
    argv += ["--senses", "a", "b", "a", "--word2vec", str(root / "w2v.bin"), "--elmo", str(root / "elmo" / "model")]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "word2vec  (one vector)    1.000       1.000" in printed
    data = json.loads((out / "polysemy.json").read_text("utf-8"))
    assert [(r["model"], r["layer"]) for r in data["rows"]] == [
        ("BERT", "0 (embeddings)"), ("BERT", "1"), ("BERT", "2"),
        ("ELMo", "0 (characters)"), ("ELMo", "1"), ("ELMo", "2"),
        ("word2vec", "(one vector)"),
    ]  # fmt: skip
    elmo_0 = np.array(data["rows"][3]["cosines"])
    np.testing.assert_allclose(elmo_0, 1.0, atol=1e-5)  # before context: the same characters, the same vector
    assert (out / "polysemy.png").stat().st_size > 0 and "| BERT | 1 |" in (out / "polysemy.md").read_text("utf-8")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--word", "上海"], "'上海' does not occur in '我们今天开会'"),
        (["--word", "今天", "--senses", "a"], "--senses gives 1 senses for 2 texts"),
        (["--senses", "a", "b"], "give --word too"),
        (["--word", "开会", "--word2vec", "{r}/w2v.bin"], "'开会' is not in the vocabulary"),
    ],
)
def test_mistakes_are_one_line(root, capsys, extra, message):
    argv = ["similarity", str(root / "plain"), TEXTS[0], TEXTS[2], *(x.format(r=root) for x in extra)]
    check_mistake(argv, root, capsys, message)
