"""pretrain/corpus.py: reading corpora (Google format, plain text, built-in), and their bad input."""

import pytest
from helpers import write

from bertkit.builtin import peoples_daily_tagged
from bertkit.errors import BertkitError, DataError
from bertkit.pretrain.corpus import (
    BUILTIN_CORPORA,
    BuiltinCorpus,
    _join_words,
    detect_format,
    read_documents,
    resolve_corpus,
    split_sentences,
)
from bertkit.pretrain.shards import build_shards

# ---- reading corpora --------------------------------------------------------------------------------------


def test_google_format_documents_and_sentences(tmp_path):
    path = write(tmp_path / "g.txt", "First one.\n  Second one.  \n\nAlone\n\n\n\nA\nB\nC\n")
    assert list(read_documents(path, fmt="google")) == [
        ["First one.", "Second one."],
        ["Alone"],  # a one-sentence document is kept
        ["A", "B", "C"],
    ]


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("今天天气很好。我们去公园吧！你去吗？", ["今天天气很好。", "我们去公园吧！", "你去吗？"]),
        ("他说：“好！”然后走了。「走吧！」她问", ["他说：“好！”", "然后走了。", "「走吧！」", "她问"]),
        ("真的吗？！（是的。）", ["真的吗？！", "（是的。）"]),
        ("Really?! Yes! (Sure!) Mr. Smith went home.", ["Really?!", "Yes!", "(Sure!)", "Mr. Smith went home."]),
        ('She said "Stop!" and left', ['She said "Stop!"', "and left"]),
        ("line one\nline two。", ["line one", "line two。"]),
        ("   ", []),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_plain_format_one_document_per_line(tmp_path):
    path = write(tmp_path / "p.txt", "第一句。第二句！\n\n   \nHello? World\n只有一句\n")
    assert list(read_documents(path, fmt="plain")) == [["第一句。", "第二句！"], ["Hello?", "World"], ["只有一句"]]


def test_auto_detection(tmp_path):
    google = write(tmp_path / "g.txt", "a\nb\n\nc\nd\n")
    plain = write(tmp_path / "p.txt", "一。二。\n三。\n")
    # Blank lines between single-line paragraphs: plain text, or no paragraph would be split.
    paragraphs = write(tmp_path / "q.txt", "一。二。\n\n三。四。\n\n五。\n")
    assert [detect_format(p) for p in (google, plain, paragraphs)] == ["google", "plain", "plain"]
    assert list(read_documents(google)) == [["a", "b"], ["c", "d"]]
    assert list(read_documents(paragraphs)) == [["一。", "二。"], ["三。", "四。"], ["五。"]]


def test_folder_reads_txt_files_in_order_and_explicit_files_of_any_name(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "b.txt", "B。\n")
    write(tmp_path / "a.txt", "A。\n")
    write(tmp_path / "sub" / "c.txt", "C。\n")
    write(tmp_path / "notes.md", "M。\n")
    assert list(read_documents(tmp_path)) == [["A。"], ["B。"], ["C。"]]
    assert list(read_documents([tmp_path / "notes.md", tmp_path / "a.txt"])) == [["M。"], ["A。"]]


def test_peoples_daily_builtin():
    assert isinstance(resolve_corpus("peoples-daily"), BuiltinCorpus)
    assert resolve_corpus("peoples-daily") is BUILTIN_CORPORA["peoples-daily"]
    assert resolve_corpus(["peoples-daily"]) is BUILTIN_CORPORA["peoples-daily"]
    docs = list(read_documents("peoples-daily"))
    assert docs[0][0].startswith("迈向充满希望的新世纪——一九九八年新年讲话")
    assert 100 < len(docs) < 19484
    assert all(doc and all(doc) for doc in docs)
    text = "".join(s for doc in docs for s in doc)
    assert "/n" not in text and "/w" not in text and "  " not in text
    assert "中共中央总书记、国家主席江泽民" in docs[0]  # the sub-headline stays with its article


def test_reviews_builtin_is_the_sentiment_training_texts_and_mixes_with_other_corpora(tmp_path):
    from bertkit.finetune.tasks import sentiment_task

    task = sentiment_task()
    docs = list(read_documents("reviews"))
    assert len(docs) == len(task.train)
    texts = {"".join(doc) for doc in docs}
    assert not texts & {ex.text for ex in task.test}  # test reviews never reach pretraining
    write(tmp_path / "mine.txt", "第一句。第二句。\n")
    mixed = resolve_corpus(["reviews", tmp_path / "mine.txt", "peoples-daily"])
    assert mixed[0] is BUILTIN_CORPORA["reviews"] and mixed[2] is BUILTIN_CORPORA["peoples-daily"]
    mixed_docs = list(read_documents(mixed))
    assert len(mixed_docs) == len(docs) + 1 + len(list(read_documents("peoples-daily")))
    assert mixed_docs[len(docs)] == ["第一句。", "第二句。"]


def test_peoples_daily_tagged():
    lines = list(peoples_daily_tagged())
    assert len(lines) == 19484
    assert lines[0][:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]
    assert ("江", "nr") in lines[1] and ("泽民", "nr") in lines[1]


def test_join_words_keeps_a_space_only_between_ascii_words():
    assert _join_words(["Windows", "98", "中文", "ok", "，", "x"]) == "Windows 98中文ok，x"


# ---- bad input --------------------------------------------------------------------------------------------


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("第一行\n第二行\n".encode() + "第三行\n".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk\.txt: line 3 is not UTF-8"):
        list(read_documents(path))


def test_binary_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    with pytest.raises(DataError, match="model.txt: .*looks binary"):
        list(read_documents(path))


def test_empty_corpus(tmp_path, mixed_tokenizer):
    write(tmp_path / "a.txt", "\n   \n\n")
    write(tmp_path / "b.txt", "")
    with pytest.raises(DataError, match="empty"):
        list(read_documents(tmp_path))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="empty"):
        build_shards(tmp_path, mixed_tokenizer, cache, progress=False)
    assert list(cache.iterdir()) == []


def test_missing_path_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file or folder"):
        read_documents(tmp_path / "nope.txt")  # fails when called, before iterating
    with pytest.raises(DataError, match="no .txt files"):
        read_documents(tmp_path)
    with pytest.raises(DataError, match="no .txt files"):
        read_documents(["peoples-daily", tmp_path])  # a mix is checked item by item
    with pytest.raises(BertkitError, match="fmt='tsv'"):
        read_documents("peoples-daily", fmt="tsv")
    with pytest.raises(BertkitError, match="built-in corpus has its own reader"):
        read_documents("peoples-daily", fmt="plain")
