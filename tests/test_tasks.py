"""tasks.py: metrics against hand-computed cases, readers and their errors, sub-word alignment, windows,
and the built-in benchmarks' splits."""

import json

import pytest
import torch

from bertkit.errors import DataError
from bertkit.finetune.metrics import (
    accuracy,
    bio_spans,
    bmes_words,
    entity_scores,
    macro_f1,
    pearson,
    spearman,
    squad_em,
    squad_f1,
    squad_normalize,
    word_scores,
)
from bertkit.finetune.readers import TagExample, read_choice_examples, read_tag_examples, read_text_examples
from bertkit.finetune.tasks import (
    FILE_TASKS,
    load_task,
    peoples_daily_cws_task,
    peoples_daily_entities,
    peoples_daily_ner_example,
    peoples_daily_ner_task,
    sentiment_task,
    sorted_labels,
)
from bertkit.finetune.windows import (
    Pieces,
    answer_pieces,
    char_span,
    owners,
    recombine,
    text_pieces,
    windows,
    word_pieces,
)
from bertkit.tokenizer import Tokenizer

# ---------------------------------------------------------------------------------------------- metrics


def test_accuracy_and_macro_f1_by_hand():
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "c"]
    assert accuracy(gold, pred) == 0.75
    # a: tp 1, 1 predicted, 2 gold -> F1 2/3; b: tp 1, 2 predicted, 1 gold -> 2/3; c: 1.
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError):
        accuracy(["a"], [])


def test_bio_spans_are_strict():
    tags = ["B-PER", "I-PER", "I-LOC", "O", "I-PER", "B-LOC", "B-LOC", "I-LOC"]
    # I-LOC after a PER entity ends it and starts nothing; the stray I-PER starts nothing; B-LOC B-LOC is two.
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 5, 6), ("LOC", 6, 8)]
    assert bio_spans(["O", "B-ORG"]) == [("ORG", 1, 2)]


def test_entity_scores_with_partial_overlaps():
    gold = [["B-PER", "I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O", "B-LOC"], ["B-LOC", "I-LOC"]]
    # Gold {PER 0-3, LOC 4-5, ORG 0-2}; predicted {PER 0-2 (partial overlap: wrong), LOC 4-5 (right),
    # LOC 0-2 (right span, wrong type: wrong)}: 1 of 3 right both ways.
    s = entity_scores(gold, pred)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert s["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["per_type"]["LOC"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert s["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find, nothing found


def test_bmes_word_f1():
    gold = ["S", "B", "E", "B", "M", "E"]  # 我 | 喜欢 | 吃苹果 -> (0,1) (1,3) (3,6)
    pred = ["S", "B", "E", "S", "S", "S"]  # (0,1) (1,3) (3,4) (4,5) (5,6)
    assert bmes_words(gold) == [(0, 1), (1, 3), (3, 6)]
    s = word_scores([gold], [pred])
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((2 / 5, 2 / 3, 0.5))
    # An invalid prediction still segments every character exactly once.
    assert bmes_words(["B", "B", "M"]) == [(0, 1), (1, 3)]
    assert bmes_words(["M", "E", "E", "S"]) == [(0, 2), (2, 3), (3, 4)]


def test_squad_normalisation_em_and_f1():
    assert squad_normalize("The  Cat's hat!") == "cats hat"
    assert squad_normalize("An apple, a day.") == "apple day"
    assert squad_em("the cat", ["A cat", "dog"]) == 1.0
    assert squad_em("cat.", ["the dog"]) == 0.0
    # pred {big, cat, sat} vs gold {cat, sat, down}: 2 in common -> P = R = 2/3.
    assert squad_f1("the big cat sat", ["a cat sat down"]) == pytest.approx(2 / 3)
    assert squad_f1("the big cat sat", ["a cat sat down", "big cat sat"]) == 1.0  # best gold answer
    assert squad_f1("", [""]) == 1.0 and squad_f1("x", [""]) == 0.0  # SQuAD 2.0 no-answer


def test_cmrc_character_f1_for_chinese():
    # CMRC 2018: characters, punctuation removed, overlap = longest common substring.
    assert squad_f1("北京市", ["北京"]) == pytest.approx(2 * 2 / (3 + 2))
    assert squad_em("北京。", ["北京"]) == 1.0 and squad_em("北京市", ["北京"]) == 0.0
    assert squad_f1("在北京的东城区", ["东城"]) == pytest.approx(2 * 2 / (7 + 2))
    assert squad_f1("京北", ["北京"]) == pytest.approx(2 * 1 / 4)  # common substring "北" (or "京"): 1
    assert squad_f1("2008年北京奥运会", ["2008年"]) == pytest.approx(2 * 2 / (7 + 2))  # "2008" is one token


# ----------------------------------------------------------------------------------------------- readers


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


# ------------------------------------------------------------------------------------ sub-word alignment


@pytest.fixture(scope="module")
def tokenizer():
    lines = ["jumping jumps jumped jumper running runs runner walked walking"] * 3 + ["江泽民在北京会见比尔盖茨。"]
    return Tokenizer.train(iter(lines), vocab_size=60, min_frequency=1)


def test_first_piece_alignment_round_trip(tokenizer):
    words = ["Jumping", "runners", "江", "泽", "民", "walked"]
    tags = ["B-X", "I-X", "B-PER", "I-PER", "I-PER", "O"]
    (pc,) = word_pieces(tokenizer, [words])
    pieces = tokenizer.convert_ids_to_tokens(pc.ids)
    assert len(pieces) > len(words)  # some words are split into ## pieces
    first = pc.first_piece
    assert [pieces[p] for p in first[2:5]] == ["江", "泽", "民"]
    assert all(not pieces[p].startswith("##") for p in first)
    assert [pc.text[a:b] for a, b in pc.spans] == words
    # A perfect tagger's answers, read at the first pieces, give back the entities' characters.
    spans = [char_span(pc, a, b) for _, a, b in bio_spans(tags)]
    assert [pc.text[a:b] for a, b in spans] == ["Jumping runners", "江 泽 民"]


def test_raw_text_words_map_back_to_characters(tokenizer):
    text = "Café: 江泽民 jumped\u00a0in 北京!"
    (pc,) = text_pieces(tokenizer, [text])
    words = [text[a:b] for a, b in pc.spans]
    assert words == ["Café", ":", "江", "泽", "民", "jumped", "in", "北", "京", "!"]
    assert text[slice(*char_span(pc, 2, 5))] == "江泽民"
    assert text[slice(*char_span(pc, 7, 9))] == "北京"
    # Every piece belongs to the word whose span holds its characters.
    enc = tokenizer.encode(text, add_special_tokens=False)
    for (a, b), w in zip(enc.offsets, pc.word_of, strict=True):
        assert pc.spans[w][0] <= a < b <= pc.spans[w][1]


def test_word_without_pieces_has_no_first_piece(tokenizer):
    (pc,) = word_pieces(tokenizer, [["a", "\u200b", "b"]])  # a zero-width space: the normaliser drops it
    assert pc.first_piece[1] is None and pc.first_piece[0] is not None and pc.first_piece[2] is not None


# ----------------------------------------------------------------------------------------- sliding windows


def test_windows_and_most_central_owner():
    assert windows(3, 4, 2) == [(0, 3)]
    assert windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert windows(5, 4, 4) == [(0, 4), (1, 5)]  # the last window ends at n
    with pytest.raises(ValueError):
        windows(10, 4, 5)
    own = owners(10, windows(10, 4, 2))
    # p=3: 3rd of window 0 (0 after it) or 2nd of window 1 (1 each side): window 1.
    assert own == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_recombine_takes_each_position_from_its_owner():
    wins = windows(10, 4, 2)
    # Window w predicts (w, position) for each of its positions, so the result shows where each came from.
    logits = [torch.tensor([[float(w), float(p)] for p in range(s, e)]) for w, (s, e) in enumerate(wins)]
    out = recombine(logits, wins, 10)
    assert out[:, 1].tolist() == list(range(10))  # every position present, in order: nothing cut
    assert out[:, 0].long().tolist() == owners(10, wins)


def test_long_tagging_input_is_windowed_not_cut(tokenizer):
    from bertkit.finetune.features import encode_tags

    words = list("江泽民在北京会见比尔盖茨") * 10  # 120 words, one piece each
    tags = ["O"] * 120
    (pc,) = word_pieces(tokenizer, [words])
    enc = encode_tags(tokenizer, [pc], [tags], ["O"], max_len=34, stride=16)
    assert len(enc.features) == len(enc.wins[0]) > 1
    assert all(len(f["input_ids"]) <= 34 for f in enc.features)
    labelled = sum(sum(x != -100 for x in f["labels"]) for f in enc.features)
    assert labelled == 120  # every word labelled once, in the window that owns it


# -------------------------------------------------------------------------------------- built-in benchmarks


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


# ------------------------------------------------------------------------ regression and multiple choice


def test_pearson_and_spearman_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
    # Deviations (-1.5, -0.5, 0.5, 1.5) and (-3, -1, 0, 4): sum of products 11, sums of squares 5 and 26.
    assert pearson(x, y) == pytest.approx(11 / (5 * 26) ** 0.5)
    assert pearson(x, [-v for v in y]) == pytest.approx(-11 / (5 * 26) ** 0.5)
    assert spearman(x, y) == pytest.approx(1.0)  # monotone, though not linear
    # Ties share their mean rank: (1, 2, 2, 3) -> (1, 2.5, 2.5, 4); against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
    assert spearman([1.0, 2.0, 2.0, 3.0], x) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0  # nothing varies: no correlation to measure


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


def test_answer_pieces_by_hand():
    offsets = [(0, 3), (4, 7), (7, 9)]  # "abc defgh": "abc", "def", "##gh"
    assert answer_pieces(offsets, 4, 9) == (1, 2)
    assert answer_pieces(offsets, 5, 6) == (1, 1)  # inside a piece: the whole piece
    assert answer_pieces(offsets, 0, 9) == (0, 2)
    assert answer_pieces(offsets, 3, 4) is None  # only the space, which no piece holds
