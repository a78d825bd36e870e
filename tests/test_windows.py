"""finetune/windows.py: first-piece alignment, sliding windows and their owners, QA answer pieces."""

import pytest
import torch

from bertkit.finetune.metrics import (
    bio_spans,
)
from bertkit.finetune.windows import (
    answer_pieces,
    char_span,
    owners,
    recombine,
    text_pieces,
    windows,
    word_pieces,
)
from bertkit.tokenizer import Tokenizer


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


def test_answer_pieces_by_hand():
    offsets = [(0, 3), (4, 7), (7, 9)]  # "abc defgh": "abc", "def", "##gh"
    assert answer_pieces(offsets, 4, 9) == (1, 2)
    assert answer_pieces(offsets, 5, 6) == (1, 1)  # inside a piece: the whole piece
    assert answer_pieces(offsets, 0, 9) == (0, 2)
    assert answer_pieces(offsets, 3, 4) is None  # only the space, which no piece holds
