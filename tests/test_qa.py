"""Extractive QA end to end: SQuAD / CMRC 2018 files and their errors, windows over long contexts with answers
that map back to the exact characters (English and Chinese), answer selection (n best, maximum length, the
window rule, the SQuAD 2.0 null threshold), and `bertkit finetune --task qa` / evaluate / predict with a
folder that transformers' AutoModelForQuestionAnswering loads with identical logits."""

import json
from pathlib import Path

import pytest
import torch
from helpers import one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli.table import main
from bertkit.errors import BertkitError, DataError
from bertkit.finetune.features import encode_qa
from bertkit.finetune.metrics import best_null_threshold
from bertkit.finetune.model import load_task_model
from bertkit.finetune.predict import qa_answers
from bertkit.finetune.readers import QAExample, read_qa_examples
from bertkit.finetune.windows import Context, QAOptions, qa_answer
from bertkit.tokenizer import Tokenizer

DATA = Path(__file__).parent / "data"
SQUAD, CMRC = DATA / "squad_v2_tiny.json", DATA / "cmrc2018_tiny.json"

NAMES, CITIES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank"], ["Paris", "London", "Berlin", "Madrid", "Rome"]
ZH_NAMES, ZH_CITIES = ["张三", "李四", "王五", "赵六"], ["北京", "上海", "广州", "深圳", "成都"]


def _squad(questions: list[tuple[str, str, str | None]]) -> dict:
    """SQuAD JSON from (context, question, answer or None for unanswerable), one paragraph per question."""
    paragraphs = []
    for i, (context, question, answer) in enumerate(questions):
        answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
        qa = {"id": f"q{i}", "question": question, "answers": answers, "is_impossible": answer is None}
        paragraphs.append({"context": context, "qas": [qa]})
    return {"version": "v2.0", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def _synthetic() -> list[tuple[str, str, str | None]]:
    """Who lives where, in English and Chinese; every fifth question asks about someone who is not there."""
    out = []
    for k in range(24):
        a, b, c = NAMES[k % 6], NAMES[(k + 1) % 6], NAMES[(k + 2) % 6]
        x, y = CITIES[k % 5], CITIES[(k + 2) % 5]
        context = f"{a} lives in {x}. {b} lives in {y}."
        out.append((context, f"Where does {[a, b][k % 2]} live?", [x, y][k % 2]))
        if k % 5 == 0:
            out.append((context, f"Where does {c} live?", None))
    for k in range(16):
        a, b = ZH_NAMES[k % 4], ZH_NAMES[(k + 1) % 4]
        x, y = ZH_CITIES[k % 5], ZH_CITIES[(k + 3) % 5]
        out.append((f"{a}住在{x}。{b}住在{y}。", f"{[a, b][k % 2]}住在哪里？", [x, y][k % 2]))
    return out


@pytest.fixture(scope="module")
def tokenizer():
    lines = []
    for path in (SQUAD, CMRC):
        for ex in read_qa_examples(path):
            lines += [ex.context, ex.question]
    lines += [f"{c} {q}" for c, q, _ in _synthetic()]
    return Tokenizer.train(iter(lines), vocab_size=600, min_frequency=1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny"), tokenizer, max_position_embeddings=128)


# ----------------------------------------------------------------------------------------------- reading


def test_read_squad_v2_and_cmrc_files():
    squad = read_qa_examples(SQUAD)
    assert [ex.id for ex in squad] == ["n1", "n2", "n3", "n4", "b1", "b2"]
    by_id = {ex.id: ex for ex in squad}
    assert by_id["n4"].answers == [] and by_id["n4"].answer_texts == [""]  # SQuAD 2.0: unanswerable
    assert by_id["b2"].answer_texts == ["Houston, Texas", "Houston"]
    assert all(ex.context[s : s + len(t)] == t for ex in squad for t, s in ex.answers)
    assert by_id["b1"].source.endswith("squad_v2_tiny.json: question 'b1'")

    cmrc = read_qa_examples(CMRC)
    assert [ex.id for ex in cmrc] == ["DEV_0_QUERY_0", "DEV_0_QUERY_1", "DEV_0_QUERY_2", "DEV_1_QUERY_0"]
    assert cmrc[1].answers == [("2009年6月25日", cmrc[1].context.index("2009年6月25日"))]


def _one(qa: dict, context: str = "Rollo led the Normans.") -> dict:
    return {"data": [{"paragraphs": [{"context": context, "qas": [qa]}]}]}


GOOD = {"id": "q7", "question": "Who led?", "answers": [{"text": "Rollo", "answer_start": 0}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({**GOOD, "answers": [{"text": "Rollo", "answer_start": 4}]}, "question 'q7': field 'answers', item 1: text "),
        ({**GOOD, "answers": [{"text": "Rollo", "answer_start": 4}]}, "is not at answer_start 4 of its context"),
        ({**GOOD, "answers": [{"text": "Rollo", "answer_start": 4}]}, "(which has 'o led' there; the text is at 0)"),
        ({**GOOD, "answers": [{"text": "Vikings", "answer_start": 0}]}, "the text is nowhere in the context"),
        ({**GOOD, "answers": [{"text": "Rollo"}]}, "question 'q7': field 'answers', item 1: no field 'answer_start'"),
        ({**GOOD, "answers": [{"text": "Rollo", "answer_start": "0"}]}, "'answer_start' should be an integer"),
        ({k: v for k, v in GOOD.items() if k != "question"}, "question 'q7': no field 'question'"),
        ({k: v for k, v in GOOD.items() if k != "id"}, "data[0].paragraphs[0].qas[0]: no field 'id'"),
        ({k: v for k, v in GOOD.items() if k != "answers"}, "question 'q7': no field 'answers'"),
        ({**GOOD, "answers": []}, "question 'q7': field 'answers' is empty; mark a question without an answer"),
        ({**GOOD, "is_impossible": True}, "question 'q7': field 'answers' is not empty but 'is_impossible' is true"),
        ({**GOOD, "question": "  "}, "question 'q7': field 'question' is empty"),
    ],
)
def test_bad_qa_files_name_the_file_question_and_field(tmp_path, content, message):
    (tmp_path / "train.json").write_text(json.dumps(_one(content)), "utf-8")
    with pytest.raises(DataError) as e:
        read_qa_examples(tmp_path / "train.json")
    assert str(e.value).startswith(f"{tmp_path / 'train.json'}: ") and message in str(e.value), str(e.value)


def test_bad_qa_file_structure(tmp_path):
    cases = {
        "notjson.json": ("{", "not valid JSON"),
        "nodata.json": ({"version": "1"}, "the top level: no field 'data'"),
        "empty.json": ({"data": []}, "empty file (no questions"),
        "nocontext.json": ({"data": [{"paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0]: no field 'context'"),
        "twice.json": ({"data": [{"paragraphs": [{"context": "Rollo.", "qas": [GOOD, GOOD]}]}]}, "id is used twice"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
        with pytest.raises(DataError) as e:
            read_qa_examples(path)
        assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)
    # Prediction reads questions without answers; answers that are there are still checked.
    path = tmp_path / "unlabelled.json"
    path.write_text(json.dumps(_one({"id": "x", "question": "Who?"})), "utf-8")
    assert read_qa_examples(path, answers=False)[0].answers == []
    with pytest.raises(DataError, match="no field 'answers'"):
        read_qa_examples(path)


# ---------------------------------------------------------------------------- windows and answer offsets


def _perfect_logits(enc) -> list[torch.Tensor]:
    """What a perfect model gives: the gold start / end where a window holds the answer, else [CLS]."""
    out = []
    for f in enc.features:
        lg = torch.full((len(f["input_ids"]), 2), -10.0)
        lg[f["start_position"], 0] = lg[f["end_position"], 1] = 10.0
        out.append(lg)
    return out


@pytest.mark.parametrize("path", [SQUAD, CMRC], ids=["english", "chinese"])
def test_training_targets_and_answers_map_back_to_exact_characters(tokenizer, path):
    examples = read_qa_examples(path)
    enc = encode_qa(tokenizer, examples, max_len=40, stride=12, max_query_length=16)
    assert all(len(f["input_ids"]) <= 40 for f in enc.features)
    long = enc.contexts[0]
    assert len(long.wins) >= 4  # the first context is several windows long: stride is exercised

    windows_with_answer, seen = {}, [0] * len(examples)
    for f in enc.features:  # an example's windows come in order
        i, ex, ctx = f["example"], examples[f["example"]], enc.contexts[f["example"]]
        s, e = ctx.wins[seen[i]]
        seen[i] += 1
        assert f["input_ids"][f["offset"] : -1] == ctx.ids[s:e]  # [CLS] question [SEP] window [SEP]
        if f["start_position"] == 0:
            assert f["end_position"] == 0
            continue
        # The target pieces, mapped back through their character offsets, are exactly the first answer.
        first, last = s + f["start_position"] - f["offset"], s + f["end_position"] - f["offset"]
        a, b = ctx.span(first, last)
        text, start = ex.answers[0]
        assert (a, b) == (start, start + len(text)) and ex.context[a:b] == text
        windows_with_answer[ex.id] = windows_with_answer.get(ex.id, 0) + 1
    answerable = [ex.id for ex in examples if ex.answers]
    assert set(windows_with_answer) == set(answerable)  # every answer fits in some window
    assert max(windows_with_answer.values()) >= 2  # and some lie in the overlap of two windows

    # A perfect model's logits give back every answer with its exact character span, over all windows.
    answers = qa_answers(enc, _perfect_logits(enc), QAOptions(null_threshold=0.0))
    for ex, ans in zip(examples, answers, strict=True):
        if ex.answers:
            text, start = ex.answers[0]
            assert (ans["text"], ans["start"], ans["end"]) == (text, start, start + len(text))
            assert ans["probability"] > 0.99
        else:  # SQuAD 2.0: every window points at [CLS], so the null score wins
            assert (ans["text"], ans["start"], ans["end"]) == ("", None, None)
    # Without a null threshold (SQuAD 1.1) there is always an answer.
    answers = qa_answers(enc, _perfect_logits(enc), QAOptions())
    assert all(
        a["text"] and ex.context[a["start"] : a["end"]] == a["text"] for ex, a in zip(examples, answers, strict=True)
    )


def test_answer_rules_by_hand():
    # 8 one-character pieces "abcdefgh" in windows (0, 5) and (3, 8). A span is read in the window that holds
    # it with the most context on its shorter side: piece 4 alone in the second (1 piece before it there, 0
    # after it in the first), 3 alone in the first, 2..4 in the first (the second does not hold it).
    ctx = Context("abcdefgh", list(range(8)), [(i, i + 1) for i in range(8)], [(0, 5), (3, 8)])
    w0 = torch.zeros(5, 2)
    w0[:, 0] = torch.tensor([0.0, 0, 5, 0, 9])  # start logits: piece 4 highest, then piece 2
    w0[:, 1] = torch.tensor([0.0, 0, 0, 4, 0])  # end logits: piece 3
    w1 = torch.zeros(5, 2)
    w1[1, 0], w1[3, 1] = 4.5, 2.0  # start at piece 4, end at piece 6
    ans = qa_answer(ctx, [w0, w1], [1.0, 2.0], QAOptions(max_answer_length=3, n_best=5))
    # Window 0's 9 (start at 4) + 4 (end at 3) runs backwards and 4..4 belongs to window 1, so window 0's best
    # is 2..3 (5 + 4 = 9); window 1's is 4..6 (4.5 + 2 = 6.5); the rest score at most 5.
    assert (ans["text"], ans["start"], ans["end"], ans["score"]) == ("cd", 2, 4, 9.0)
    assert ans["null_score"] == 1.0  # the lowest over the windows
    spans = [(s["start"], s["end"]) for s in ans["n_best"]]
    assert spans[:2] == [(2, 4), (4, 7)] and len(spans) == 5 == len(set(spans))
    assert all(0 < e - s <= 3 for s, e in spans)  # forward spans of at most max_answer_length pieces
    assert ans["probability"] == pytest.approx(
        1 / (1 + sum(2.718281828 ** (s["score"] - 9) for s in ans["n_best"][1:]))
    )
    # A span is read in the window that holds it best: 3..5 starts at a piece of window 0 but runs past its
    # end, so window 1 reads it.
    w1_late = torch.zeros(5, 2)
    w1_late[0, 0] = w1_late[2, 1] = 20.0
    assert qa_answer(ctx, [w0, w1_late], [1.0, 2.0], QAOptions(3, 5))["text"] == "def"
    short = qa_answer(ctx, [w0, w1], [1.0, 2.0], QAOptions(max_answer_length=2, n_best=5))
    assert (4, 7) not in [(s["start"], s["end"]) for s in short["n_best"]] and short["text"] == "cd"

    # SQuAD 2.0: no answer when the null score (the lowest over the windows: 12) beats the best span (9) by
    # more than the threshold.
    nulls = [12.0, 20.0]
    assert qa_answer(ctx, [w0, w1], nulls, QAOptions(3, 5, null_threshold=2.9))["text"] == ""
    kept = qa_answer(ctx, [w0, w1], nulls, QAOptions(3, 5, null_threshold=3.1))
    assert kept["text"] == "cd" and 0 < kept["probability"] < 0.5  # the null answer takes most of the mass
    assert qa_answer(ctx, [w0, w1], nulls, QAOptions(3, 5))["text"] == "cd"  # SQuAD 1.1: always answer


def test_best_null_threshold_by_hand():
    # Question 0: answerable, its best span right (span F1 1, null F1 0); diff -1.
    # Question 1: unanswerable (null F1 1), its span wrong; diff 2.  Question 2: unanswerable; diff -3.
    diffs, span, null = [-1.0, 2.0, -3.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]
    # Thresholds: below -3 -> answer none: 2/3; -3 -> answer q2: 1/3; -1 -> q2, q0: 2/3; 2 -> all: 1/3.
    threshold, best = best_null_threshold(diffs, span, null)
    assert (threshold, best) == (-4.0, pytest.approx(2 / 3))  # the first best candidate is kept
    threshold, best = best_null_threshold([-1.0, 2.0, -3.0], [1.0, 0.0, 0.5], [0.0, 1.0, 0.0])
    assert (threshold, best) == (-1.0, pytest.approx(2.5 / 3))


# -------------------------------------------------------------------------------------------- end to end


def _run(capsys, args: list[str]) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_qa_from_cli_loss_falls_and_loads_in_transformers(tmp_path, capsys, tiny_model):
    transformers = pytest.importorskip("transformers")
    data = _synthetic()
    (tmp_path / "train.json").write_text(json.dumps(_squad(data), ensure_ascii=False), "utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(_squad(data[:8]), ensure_ascii=False), "utf-8")  # 2 unanswerable
    run = tmp_path / "run"
    out = _run(
        capsys,
        ["finetune", "--task", "qa", "--model", str(tiny_model), "--out", str(run)]
        + ["--train", str(tmp_path / "train.json"), "--dev", str(tmp_path / "dev.json")]
        + ["--epochs", "3", "--batch-size", "8", "--grad-accum", "2", "--lr", "5e-3", "--warmup", "0"]
        + ["--max-seq-length", "32", "--precision", "fp32"],
    )
    assert "unanswerable questions in the data" in out and "dev f1" in out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["eval"]["train_loss"] for r in rows if "eval" in r]
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.8, losses
    assert {"exact_match", "f1", "has_answer_f1", "no_answer_accuracy", "best_null_threshold"} <= set(rows[-1]["eval"])

    # The folder loads in transformers with identical start and end logits.
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]
    ref = transformers.AutoModelForQuestionAnswering.from_pretrained(run / "model").eval()
    model, tok = load_task_model(run / "model")
    assert model.kind == "qa"
    batch = tok(["Where does Alice live?", "张三住在哪里？"], ["Alice lives in Paris.", "张三住在北京。李四住在上海。"])
    with torch.no_grad():
        ours, theirs = model(**batch), ref(**batch)
    m = batch["attention_mask"].bool()
    assert (ours[..., 0] - theirs.start_logits)[m].abs().max() < 1e-5
    assert (ours[..., 1] - theirs.end_logits)[m].abs().max() < 1e-5

    # evaluate: EM / F1 on the SQuAD 2.0 dev file, the same as the run's last dev evaluation scored.
    metrics = json.loads(
        _run(
            capsys, ["evaluate", "--model", str(run / "model"), "--task", "qa"] + ["--data", str(tmp_path / "dev.json")]
        )
    )
    summary = json.loads((run / "summary.json").read_text())
    assert metrics["f1"] == pytest.approx(summary["dev"]["f1"]) and metrics["null_threshold"] == 0.0

    # predict: JSONL (question + context columns; a context longer than the window) and SQuAD JSON in;
    # answers out with character offsets into their contexts.
    long_context = " ".join(f"{n} lives in {c}." for n in NAMES for c in CITIES[:2])  # ~70 pieces > 32
    rows_in = [
        {"id": "a", "question": "Where does Emma live?", "context": long_context},
        {"question": "王五住在哪里？", "context": "王五住在广州。"},
    ]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_in))
    _run(
        capsys,
        ["predict", "--model", str(run / "model"), "--input", str(tmp_path / "questions.jsonl")]
        + ["--output", str(tmp_path / "answers.jsonl")],
    )
    answers = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text("utf-8").splitlines()]
    assert [a["id"] for a in answers] == ["a", "2"]  # the id field, else the line number
    for a, r in zip(answers, rows_in, strict=True):
        assert a["answer"] and r["context"][a["start"] : a["end"]] == a["answer"]
    _run(
        capsys,
        ["predict", "--model", str(run / "model"), "--input", str(CMRC)]
        + ["--output", str(tmp_path / "cmrc.jsonl"), "--null-threshold", "1000"],
    )
    cmrc = [json.loads(x) for x in (tmp_path / "cmrc.jsonl").read_text("utf-8").splitlines()]
    contexts = {ex.id: ex.context for ex in read_qa_examples(CMRC)}
    assert [a["id"] for a in cmrc] == list(contexts)
    for a in cmrc:
        assert contexts[a["id"]][a["start"] : a["end"]] == a["answer"] != ""  # threshold 1000: always answer


def test_qa_bad_input_is_one_line_error(tmp_path, capsys, tiny_model):
    bad = _one({**GOOD, "answers": [{"text": "Normans", "answer_start": 3}]})
    (tmp_path / "bad.json").write_text(json.dumps(bad), "utf-8")
    code = main(
        ["finetune", "--task", "qa", "--model", str(tiny_model), "--out", str(tmp_path / "run")]
        + ["--train", str(tmp_path / "bad.json")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "bad.json: question 'q7': field 'answers', item 1: text 'Normans' is not at answer_start 3" in err[0]
    example = QAExample("x", "Who?", "\u200b\u200b", [("\u200b", 0)], "f.json: question 'x'")  # dropped characters
    with pytest.raises(BertkitError, match="f.json: question 'x': answer .* is only characters the tokenizer drops"):
        encode_qa(Tokenizer.train(iter(["a b"]), vocab_size=30, min_frequency=1), [example], 32, None, 8)
