"""finetune/readers.py: labelled files in CSV, TSV, JSONL and CoNLL, and the errors that name file, line and field."""

import json

import pytest

from bertkit.errors import DataError
from bertkit.finetune.readers import read_choice_examples, read_tag_examples, read_text_examples
from bertkit.finetune.tasks import (
    FILE_TASKS,
    load_task,
    sorted_labels,
)


def test_read_csv_tsv_jsonl(tmp_path):
    csv_file = tmp_path / "train.csv"
    csv_file.write_text('text,pair,label\n"hello, ""world""\nsecond line",other,pos\nplain,x,neg\n', "utf-8")
    ex = read_text_examples(csv_file, text_pair_column="pair")
    assert [e.text for e in ex] == ['hello, "world"\nsecond line', "plain"]
    assert [e.label for e in ex] == ["pos", "neg"] and ex[0].text_pair == "other"
    assert ex[1].source.endswith("line 4")  # the quoted field spans lines 2-3

    tsv = tmp_path / "train.tsv"
    tsv.write_text('sentence\tlabel\n他说"好"\t1\n\nok\t0\n', "utf-8")  # TSV: quotes are plain characters
    assert [(e.text, e.label) for e in read_text_examples(tsv, "sentence")] == [('他说"好"', "1"), ("ok", "0")]

    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": true}\n', "utf-8")
    assert [e.label for e in read_text_examples(jsonl)] == ["1", "true"]
    assert sorted_labels(["10", "2", "1"]) == ["1", "2", "10"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty.csv: empty file"),
        ("header.csv", "text,label\n", "header.csv: empty file (a header but no rows)"),
        ("empty.jsonl", "\n\n", "empty.jsonl: empty file"),
        ("nolabel.csv", "text,sentiment\nhi,pos\n", "nolabel.csv: line 2: no column 'label'"),
        ("nolabel.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', "nolabel.jsonl: line 2: no column 'label'"),
        ("blank.tsv", "text\tlabel\nhi\t \n", "blank.tsv: line 2: column 'label' is empty"),
        ("short.csv", "text,label\nhi\n", "short.csv: line 2: 1 fields but the header has 2"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', "bad.jsonl: line 2: not valid JSON"),
        ("data.xlsx", "x", "unknown format '.xlsx'"),
    ],
)
def test_reader_errors_name_file_line_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, "utf-8")
    with pytest.raises(DataError) as e:
        read_text_examples(tmp_path / name)
    assert message in str(e.value)


def test_unseen_labels_and_tags_are_errors(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,pos\nb,neg\n", "utf-8")
    (tmp_path / "test.csv").write_text("text,label\nc,pos\nd,neutral\n", "utf-8")
    with pytest.raises(DataError, match=r"test.csv: line 3: label 'neutral' does not occur in the training file"):
        load_task("classification", tmp_path / "train.csv", test=tmp_path / "test.csv")

    (tmp_path / "train.conll").write_text("-DOCSTART- O\n\n江 B-PER\n泽 I-PER\n民 I-PER\n说 O\n", "utf-8")
    (tmp_path / "dev.conll").write_text("李 B-PER\n鹏 I-PER\n\n北 B-LOC\n京 I-LOC\n", "utf-8")
    with pytest.raises(DataError, match=r"dev.conll: line 4: tag 'B-LOC' does not occur in the training file"):
        load_task("ner", tmp_path / "train.conll", dev=tmp_path / "dev.conll")
    task = load_task("ner", tmp_path / "train.conll")
    assert task.labels == ["O", "B-PER", "I-PER"] and task.train[0].words == ["江", "泽", "民", "说"]

    (tmp_path / "dev.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["O", "B-ORG"]}\n', "utf-8")
    with pytest.raises(DataError, match=r"dev.jsonl: line 1: field 'tags', item 2 'B-ORG' does not occur"):
        load_task("ner", tmp_path / "train.conll", dev=tmp_path / "dev.jsonl")


def test_tagging_input_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n', "utf-8")
    with pytest.raises(DataError, match="a.jsonl: line 1: 2 items in 'tokens' but 1 in 'tags'"):
        read_tag_examples(tmp_path / "a.jsonl")
    (tmp_path / "iob1.conll").write_text("a O\nb I-PER\n", "utf-8")
    with pytest.raises(DataError, match=r"iob1.conll: line 2: tag 'I-PER' follows 'O'.*IOB2"):
        load_task("ner", tmp_path / "iob1.conll")
    (tmp_path / "one.conll").write_text("a O\nb\n", "utf-8")
    with pytest.raises(DataError, match="one.conll: line 2: expected a token and a tag"):
        read_tag_examples(tmp_path / "one.conll")
    (tmp_path / "empty.conll").write_text("\n\n", "utf-8")
    with pytest.raises(DataError, match="empty.conll: empty file"):
        read_tag_examples(tmp_path / "empty.conll")


def test_regression_labels_are_numbers(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x", "score": 3.5}\n{"text": "y", "score": "-1e-2"}\n', "utf-8")
    assert [e.label for e in read_text_examples(tmp_path / "a.jsonl", label_column="score", numeric=True)] == [
        "3.5",
        "-1e-2",
    ]
    for value in ("high", "nan", True, [1]):
        rows = [{"text": "x", "score": 1}, {"text": "y", "score": value}]
        (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
        with pytest.raises(DataError) as e:
            read_text_examples(tmp_path / "b.jsonl", label_column="score", numeric=True)
        assert f"b.jsonl: line 2: column 'score' should be a number, got {json.dumps(value)}" in str(e.value)
    (tmp_path / "train.csv").write_text("text,score\nx,0.5\ny,4\n", "utf-8")
    task = load_task("regression", tmp_path / "train.csv", label_column="score")
    assert task.kind == "regression" and task.labels == ["score"]
    assert FILE_TASKS["multiple-choice"] == "multiple_choice" and FILE_TASKS["qa"] == "qa"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"context": "c", "choices": ["a", "b"], "label": 2}, "line 1: field 'label' should be the index of the right"),
        ({"context": "c", "choices": ["a", "b"], "label": True}, "0 to 1, got true"),
        ({"context": "c", "choices": ["a"], "label": 0}, "line 1: field 'choices' has 1 choice; give at least 2"),
        ({"context": "c", "choices": "a b", "label": 0}, "line 1: field 'choices' should be a non-empty list"),
        ({"context": "c", "choices": ["a", ""], "label": 0}, "line 1: field 'choices' should be a non-empty list"),
        ({"choices": ["a", "b"], "label": 0}, "line 1: no column 'context'"),
        ({"context": "c", "choices": ["a", "b"]}, "line 1: no field 'label'"),
        ({"context": "c", "question": 3, "choices": ["a", "b"], "label": 0}, "field 'question' should be a string"),
    ],
)
def test_multiple_choice_reader_errors(tmp_path, line, message):
    (tmp_path / "mc.jsonl").write_text(json.dumps(line) + "\n", "utf-8")
    with pytest.raises(DataError) as e:
        read_choice_examples(tmp_path / "mc.jsonl")
    assert str(e.value).startswith(f"{tmp_path / 'mc.jsonl'}: ") and message in str(e.value), str(e.value)


def test_multiple_choice_reader(tmp_path):
    lines = [
        {"context": "张三喜欢苹果。", "question": "他喜欢什么？", "choices": ["苹果", "汽车"], "label": 0},
        {"context": "Which is a fruit?", "choices": ["car", "pear", "desk"], "label": "1"},  # no question
    ]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    a, b = read_choice_examples(tmp_path / "mc.jsonl")
    assert (a.question, a.choices, a.label) == ("他喜欢什么？", ["苹果", "汽车"], 0)
    assert (b.question, b.label, b.source) == ("", 1, f"{tmp_path / 'mc.jsonl'}: line 2")
    assert read_choice_examples(tmp_path / "mc.jsonl", label_column=None)[0].label is None
    task = load_task("multiple-choice", tmp_path / "mc.jsonl", dev=tmp_path / "mc.jsonl")
    assert task.kind == "multiple_choice" and task.labels == [] and len(task.dev) == 2
