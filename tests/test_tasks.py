"""finetune/tasks.py: the built-in benchmarks' splits and entities."""

import json

import pytest

from bertkit.errors import DataError
from bertkit.finetune.metrics import (
    bio_spans,
    bmes_words,
)
from bertkit.finetune.readers import TagExample, read_tag_examples
from bertkit.finetune.tasks import (
    load_task,
    peoples_daily_cws_task,
    peoples_daily_entities,
    peoples_daily_ner_example,
    peoples_daily_ner_task,
    sentiment_task,
)
from bertkit.finetune.windows import (
    Pieces,
)


def test_sentiment_split():
    task = sentiment_task()
    assert (len(task.train), len(task.dev), len(task.test)) == (13891, 1736, 1736)
    assert task.labels == ["neg", "pos"]
    texts = [set(e.text for e in split) for split in (task.train, task.dev, task.test)]
    assert sum(map(len, texts)) == 13891 + 1736 + 1736  # no repeats within a split
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert sentiment_task().test[0].text == task.test[0].text  # the split is fixed


def test_peoples_daily_entities():
    line = [("中共中央", "nt"), ("总书记", "n"), ("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns")]
    ex = peoples_daily_ner_example(line)
    assert ex.words == list("中共中央总书记江泽民在北京")
    spans = [(t, "".join(ex.words[a:b])) for t, a, b in bio_spans(ex.tags)]
    assert spans == [("ORG", "中共中央"), ("PER", "江泽民"), ("LOC", "北京")]
    names = [("江", "nr"), ("泽民", "nr"), ("李", "nr"), ("鹏", "nr"), ("马克思", "nr"), ("恩格斯", "nr")]
    assert [(a, b) for _, a, b in peoples_daily_entities(names)] == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert peoples_daily_entities([("欧阳", "nr"), ("修", "nr")]) == [("PER", 0, 2)]


def test_peoples_daily_ner_and_cws_splits():
    ner, cws = peoples_daily_ner_task(), peoples_daily_cws_task()
    assert (len(ner.train), len(ner.dev), len(ner.test)) == (15196, 1899, 1899)
    assert ner.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    lines = [{"".join(e.words) for e in split} for split in (ner.train, ner.dev, ner.test)]
    assert not (lines[0] & lines[1] or lines[0] & lines[2] or lines[1] & lines[2])
    # The same lines in the same splits for both tasks.
    assert [e.words for e in cws.test] == [e.words for e in ner.test]
    # 江/nr 泽民/nr on the file's second line is one PER entity, not two.
    second = next(e for e in ner.train + ner.dev + ner.test if "".join(e.words) == "中共中央总书记、国家主席江泽民")
    spans = [("".join(second.words[a:b]), t) for t, a, b in bio_spans(second.tags)]
    assert spans == [("中共中央", "ORG"), ("江泽民", "PER")]
    # BMES tags give the corpus's words back.
    ex = cws.train[0]
    words = ["".join(ex.words[a:b]) for a, b in bmes_words(ex.tags)]
    assert "".join(words) == "".join(ex.words) and all(t in "BMES" for t in ex.tags)


def test_builtin_task_refuses_files(tmp_path):
    with pytest.raises(DataError, match="built in"):
        load_task("sentiment", train=tmp_path / "x.csv")
    with pytest.raises(DataError, match="needs --train"):
        load_task("classification")


def test_tag_example_sources_in_messages(tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"tokens": ["a"], "tags": ["X-1"]}) + "\n", "utf-8")
    with pytest.raises(DataError, match="t.jsonl: line 1: field 'tags', item 1 'X-1' is not O, B-<type> or I-<type>"):
        load_task("ner", tmp_path / "t.jsonl")
    assert isinstance(read_tag_examples(tmp_path / "t.jsonl")[0], TagExample)
    assert Pieces([], [], [], "").first_piece == []
