"""finetune/baselines.py and `bertkit baseline`: the classical baselines learn what they should, choose on dev,
and run on the built-in tasks' splits."""

import json
import random

import pytest

from bertkit.cli import main
from bertkit.errors import BertkitError
from bertkit.finetune.baselines import char_class, char_features, run_baseline
from bertkit.finetune.readers import TagExample, TextExample
from bertkit.finetune.tasks import TaskData


def text_task(n: int, seed: int, pairs: bool = False) -> TaskData:
    """The label is whether 好 or 差 appears, among random filler characters (with `pairs`: in the second text,
    the first being filler only)."""
    rng = random.Random(seed)
    filler = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发"
    examples = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        chars = [rng.choice(filler) for _ in range(rng.randint(5, 15))]
        chars.insert(rng.randrange(len(chars) + 1), "好" if label == "pos" else "差")
        text = "".join(chars)
        if pairs:
            examples.append(TextExample("".join(rng.sample(filler, 8)), label, text_pair=text))
        else:
            examples.append(TextExample(text, label))
    return TaskData(
        "toy",
        "classification",
        ["neg", "pos"],
        examples[: n // 2],
        examples[n // 2 : 3 * n // 4],
        examples[3 * n // 4 :],
    )


def test_tfidf_baseline_learns_a_character_rule_and_chooses_on_dev():
    result = run_baseline(text_task(400, 0))
    assert result["metric"] == "accuracy"
    assert result["test"]["accuracy"] > 0.95 and result["test"]["examples"] == 100
    assert set(result["grid"]) == {"1.0", "3.0", "10.0", "30.0"}
    chosen = str(result["setting"]["C"])
    assert result["grid"][chosen] == max(result["grid"].values())  # the setting is dev's best
    assert result["dev"]["accuracy"] == pytest.approx(result["grid"][chosen], abs=1e-4)


def test_tfidf_baseline_reads_both_texts_of_a_pair():
    result = run_baseline(text_task(400, 1, pairs=True))
    assert result["test"]["accuracy"] > 0.95
    assert run_baseline(text_task(400, 1, pairs=True)) | {"seconds": 0} == result | {"seconds": 0}  # same bits


def test_crf_baseline_learns_entities_from_context():
    # a person is the two characters after 姓 ("surname"); everything else is O
    rng = random.Random(0)
    filler = list("今天我们去公园散步看书学习工作")
    examples = []
    for _ in range(300):
        words = [rng.choice(filler) for _ in range(rng.randint(3, 8))]
        at = rng.randrange(len(words) + 1)
        name = [rng.choice("王李张刘陈"), rng.choice("伟芳娜敏静")]
        words[at:at] = ["姓", *name]
        tags = ["O"] * len(words)
        tags[at + 1], tags[at + 2] = "B-PER", "I-PER"
        examples.append(TagExample(words, tags))
    task = TaskData(
        "toy-ner", "tagging", ["O", "B-PER", "I-PER"], examples[:200], examples[200:250], examples[250:], "bio"
    )
    result = run_baseline(task)
    assert result["metric"] == "f1" and result["test"]["f1"] > 0.95
    assert result["setting"]["c2"] in (0.01, 0.1)


def test_char_features_see_neighbours_bigrams_and_classes():
    f = char_features(["北", "京", "1"])
    assert "c0=北" in f[0] and "c-1=<s>" in f[0] and "c+1=京" in f[0] and "BOS" in f[0]
    assert "c0c+1=北京" in f[0] and "c-1c+1=北1" in f[1] and "EOS" in f[2] and "class=digit" in f[2]
    assert [char_class(c) for c in "a１，中"] == ["latin", "digit", "punct", "other"]


def test_no_baseline_for_qa_and_an_empty_dev_split():
    with pytest.raises(BertkitError, match="no classical baseline for qa"):
        run_baseline(TaskData("q", "qa", [], [object()], [object()], []))
    with pytest.raises(BertkitError, match="needs training and dev examples"):
        run_baseline(TaskData("t", "classification", ["a"], [TextExample("x", "a")], [], []))


def test_baseline_command_on_the_builtin_sentiment_split(tmp_path, capsys):
    assert main(["baseline", "--task", "sentiment", "--max-train-examples", "500", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "500 train, 1736 dev, 1736 test" in out and "TF-IDF + logistic regression" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    # far above the majority class (52%), as a practitioner's first try is
    assert 0.74 < summary["test"]["accuracy"] < 0.84 and summary["train_examples"] == 500


def test_baseline_command_errors_are_one_line(tmp_path, capsys):
    assert main(["baseline", "--task", "sentiment", "--max-train-examples", "0"]) == 2
    assert "--max-train-examples must be at least 1" in capsys.readouterr().err
    assert (
        main(
            [
                "baseline",
                "--task",
                "classification",
                "--train",
                str(tmp_path / "nope.csv"),
                "--dev",
                str(tmp_path / "nope.csv"),
            ]
        )
        == 2
    )
    assert "nope.csv" in capsys.readouterr().err
