"""finetune/loop.py (with model, features, predict)
and the finetune / evaluate / predict commands: every task runs from the CLI on a tiny set and
its loss falls; exported heads match `transformers`; bad input is a one-line error naming file, line, field."""

import json
from pathlib import Path

import pytest
import torch
from helpers import one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli.table import main
from bertkit.config import BertConfig
from bertkit.finetune.model import TaskModel, build_model, layerwise_param_groups, load_task_model
from bertkit.finetune.predict import predict_texts
from bertkit.finetune.tasks import peoples_daily_ner_task, sentiment_task
from bertkit.finetune.windows import text_pieces
from bertkit.hf import build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder, ClassifierHead
from bertkit.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

GOOD, BAD = "好棒喜欢满意推荐", "差烂失望退货糟"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 2-layer, 32-wide BERT with a vocabulary trained on the built-in data and some English."""
    lines = [e.text for e in sentiment_task().train[:1500]]
    lines += ["".join(e.words) for e in peoples_daily_ner_task().train[:1500]]
    lines += ["Bill Gates met Jiang Zemin in Beijing on Monday", "the cat sat on the mat"] * 5
    tok = Tokenizer.train(iter(lines), vocab_size=2000, min_frequency=1)
    # seed 1234 is not a seed the runs use: --random-init must draw weights of its own
    return save_tiny_bert(tmp_path_factory.mktemp("tiny"), tok, seed=1234)


def _finetune(capsys, *args: str) -> str:
    code = main(
        ["finetune", "--epochs", "3", "--batch-size", "8", "--lr", "3e-3", "--warmup", "0"]
        + ["--max-seq-length", "32", "--precision", "fp32", *args]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _epoch_losses(run) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["eval"]["train_loss"] for r in rows if "eval" in r]


def _assert_loss_falls(run) -> None:
    losses = _epoch_losses(run)
    assert len(losses) == 3 and losses[-1] < losses[0], losses


# ------------------------------------------------------------------------------------ built-in tasks


@pytest.mark.parametrize(
    ("task", "metric", "text"),
    [
        ("sentiment", "accuracy", "这个东西很好，推荐！"),
        ("peoples-daily-ner", "f1", "国家主席江泽民在北京会见了美国总统克林顿。" * 6),  # 126 chars > 32: windows
        ("peoples-daily-cws", "f1", "我们在北京开会，大家讨论经济改革的问题。" * 6),
    ],
)
def test_builtin_task_from_cli(tmp_path, capsys, tiny_model, task, metric, text):
    run = tmp_path / "run"
    small = ["--max-train-examples", "48", "--max-eval-examples", "24"]
    out = _finetune(capsys, "--task", task, "--model", str(tiny_model), "--out", str(run), *small)
    assert f"test {metric}" in out
    _assert_loss_falls(run)
    for name in ("model/config.json", "model/model.safetensors", "model/vocab.txt", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["examples"] == 24 and 0 <= summary["test"][metric] <= 1

    assert main(["evaluate", "--model", str(run / "model"), "--task", task, "--max-eval-examples", "24"]) == 0
    assert json.loads(capsys.readouterr().out)[metric] == pytest.approx(summary["test"][metric], abs=1e-6)

    (tmp_path / "in.txt").write_text(text + "\n\n短文本\n", "utf-8")
    assert (
        main(
            ["predict", "--model", str(run / "model"), "--input", str(tmp_path / "in.txt")]
            + ["--output", str(tmp_path / "out.jsonl")]
        )
        == 0
    )
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["text"] for r in records] == [text, "短文本"]
    rec = records[0]
    if task == "sentiment":
        assert rec["label"] in ("neg", "pos") and sum(rec["scores"].values()) == pytest.approx(1, abs=1e-4)
    elif task == "peoples-daily-ner":
        for ent in rec["entities"]:
            assert ent["type"] in ("PER", "LOC", "ORG") and text[ent["start"] : ent["end"]] == ent["text"]
    else:  # every character is in exactly one word, though the text is 4 windows long: nothing was cut
        assert "".join(w["text"] for w in rec["words"]) == text
        assert [w["start"] for w in rec["words"][1:]] == [w["end"] for w in rec["words"][:-1]]


def test_test_predictions_and_compare_against_the_baseline(tmp_path, capsys, tiny_model):
    """A classification run and the baseline each keep their test predictions; `compare` pairs them."""
    small = ["--max-train-examples", "48", "--max-eval-examples", "24"]
    run, base = tmp_path / "run", tmp_path / "base"
    _finetune(capsys, "--task", "sentiment", "--model", str(tiny_model), "--out", str(run), "--seeds", "0", "1", *small)
    assert main(["baseline", "--task", "sentiment", "--out", str(base), *small]) == 0
    for folder in (run / "seed-0", run / "seed-1", base):
        rows = [json.loads(x) for x in (folder / "test_predictions.jsonl").read_text("utf-8").splitlines()]
        acc = json.loads((folder / "summary.json").read_text())["test"]["accuracy"]
        assert len(rows) == 24 and {r["predicted"] for r in rows} <= {"pos", "neg"}
        assert sum(r["gold"] == r["predicted"] for r in rows) / 24 == pytest.approx(acc)
    capsys.readouterr()

    assert main(["compare", str(run), str(base), "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "seed-0" in out and "seed-1" in out and "mean of the 2 runs above" in out and "McNemar" in out

    # B must be one run; both sides must have scored the same test examples; a folder needs predictions
    assert main(["compare", str(base), str(run)]) == 2
    assert "holds 2 runs' predictions" in capsys.readouterr().err
    other = tmp_path / "other"
    assert main(["baseline", "--task", "sentiment", "--out", str(other), "--max-train-examples", "48"]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(other)]) == 2
    assert "not scored on the same test examples" in capsys.readouterr().err
    assert main(["compare", str(tiny_model), str(base)]) == 2
    assert "no test_predictions.jsonl under" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"gold": "pos"}\n', "utf-8")
    assert main(["compare", str(tmp_path / "bad.jsonl"), str(base)]) == 2
    assert "bad.jsonl, line 1: not a prediction line" in capsys.readouterr().err


def test_compare_a_tagger_against_the_crf(tmp_path, capsys, tiny_model):
    small = ["--max-train-examples", "48", "--max-eval-examples", "24"]
    run, base = tmp_path / "run", tmp_path / "base"
    _finetune(capsys, "--task", "peoples-daily-ner", "--model", str(tiny_model), "--out", str(run), *small)
    assert main(["baseline", "--task", "peoples-daily-ner", "--out", str(base), *small]) == 0
    for folder in (run, base):
        rows = [json.loads(x) for x in (folder / "test_predictions.jsonl").read_text("utf-8").splitlines()]
        assert len(rows) == 24 and all(len(r["gold"]) == len(r["predicted"]) for r in rows)
    capsys.readouterr()
    assert main(["compare", str(run), str(base), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()  # B, the header, one run of A (no McNemar for tags), the closing line
    assert "entity F1" in lines[0] and len(lines) == 4 and lines[2].endswith("—"), out


def test_sequence_classifier_runs_pretrained_and_random_init(tmp_path, capsys, tiny_model):
    """A text classification from files; the exported folder gives transformers' logits."""
    rows = [(f"{a}{b}的东西", "pos") for a in GOOD for b in "东西产品"] + [
        (f"{a}{b}的东西", "neg") for a in BAD for b in "东西产品"
    ]
    for name, part in (("train", rows), ("dev", rows[::3]), ("test", rows[1::3])):
        (tmp_path / f"{name}.csv").write_text("review,label\n" + "".join(f"{t},{y}\n" for t, y in part), "utf-8")
    files = [f"--{s}={tmp_path / s}.csv" for s in ("train", "dev", "test")]
    run = tmp_path / "run"
    out = _finetune(
        capsys,
        "--task",
        "classification",
        "--model",
        str(tiny_model),
        "--out",
        str(run),
        *files,
        "--text-column",
        "review",
        "--layer-decay",
        "0.8",
    )
    assert "2 labels (neg, pos)" in out
    _assert_loss_falls(run)

    ref = transformers.AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    assert ref.config.id2label == {0: "neg", 1: "pos"}
    model, tok = load_task_model(run / "model")
    batch = tok(["好的东西", "差的产品"])
    with torch.no_grad():
        assert (model(**batch) - ref(**batch).logits).abs().max() < 1e-5

    random_run = tmp_path / "random"
    _finetune(
        capsys,
        "--task",
        "classification",
        "--model",
        str(tiny_model),
        "--out",
        str(random_run),
        *files,
        "--text-column",
        "review",
        "--random-init",
    )
    _assert_loss_falls(random_run)
    init = load_pretrained(tiny_model, tokenizer=False).encoder.state_dict()
    trained = load_pretrained(random_run / "model", tokenizer=False).encoder.state_dict()
    key = "embeddings.word_embeddings.weight"
    # A fresh random draw, not the folder's weights plus a little training.
    assert (init[key] - trained[key]).abs().mean() > 0.01


def test_sentence_pairs_and_several_seeds(tmp_path, capsys, tiny_model):
    words = ["北京", "上海", "经济", "改革", "会议", "人民"]
    lines = [{"a": a, "b": b, "label": "same" if a == b else "different"} for a in words for b in words]
    lines += [x for x in lines if x["label"] == "same"] * 4  # balance the classes a little
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    run = tmp_path / "run"
    out = _finetune(
        capsys,
        "--task",
        "classification",
        "--model",
        str(tiny_model),
        "--out",
        str(run),
        "--train",
        str(tmp_path / "train.jsonl"),
        "--dev",
        str(tmp_path / "train.jsonl"),
        "--text-column",
        "a",
        "--text-pair-column",
        "b",
        "--seeds",
        "0",
        "1",
    )
    assert "dev accuracy over 2 seeds: mean" in out
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["dev"]["values"]) == 2 and summary["dev"]["max"] == max(summary["dev"]["values"])
    for seed in (0, 1):
        _assert_loss_falls(run / f"seed-{seed}")
    model, tok = load_task_model(run / "seed-0" / "model")
    (rec,) = predict_texts(model, tok, ["北京"], ["北京"])
    assert set(rec["scores"]) == {"different", "same"}


def test_ner_from_conll_files_with_offsets(tmp_path, capsys, tiny_model):
    sentences = [("江泽民", "PER", "在北京"), ("李鹏", "PER", "到上海"), ("新华社", "ORG", "报道")] * 8

    def conll(items):
        out = []
        for name, etype, rest in items:
            out += [f"{c} {'B' if i == 0 else 'I'}-{etype}" for i, c in enumerate(name)] + [f"{c} O" for c in rest]
            out.append("")
        return "\n".join(out)

    (tmp_path / "train.conll").write_text(conll(sentences), "utf-8")
    (tmp_path / "test.conll").write_text(conll(sentences[:3]), "utf-8")
    run = tmp_path / "run"
    _finetune(
        capsys,
        "--task",
        "ner",
        "--model",
        str(tiny_model),
        "--out",
        str(run),
        "--train",
        str(tmp_path / "train.conll"),
        "--test",
        str(tmp_path / "test.conll"),
        "--epochs",
        "3",
    )
    _assert_loss_falls(run)
    model, tok = load_task_model(run / "model")
    assert (
        model.kind == "tagging" and model.scheme == "bio" and model.labels == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    )

    # Whatever the tiny model predicts, entities are whole words of the text at the right characters.
    text = "Bill Gates 说：江泽民在北京。"
    (rec,) = predict_texts(model, tok, [text])
    (pc,) = text_pieces(tok, [text])
    starts, ends = {a for a, _ in pc.spans}, {b for _, b in pc.spans}
    for ent in rec["entities"]:
        assert text[ent["start"] : ent["end"]] == ent["text"]
        assert ent["start"] in starts and ent["end"] in ends

    assert (
        main(["evaluate", "--model", str(run / "model"), "--task", "ner", "--data", str(tmp_path / "test.conll")]) == 0
    )
    assert "per_type" in json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------------------------- parity


def _inputs(vocab_size):
    torch.manual_seed(1)
    ids = torch.randint(5, vocab_size, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))


def test_token_classifier_parity_both_ways(tmp_path, tiny_config):
    torch.manual_seed(0)
    config = BertConfig(**{**tiny_config.__dict__, "id2label": {0: "O", 1: "B-PER", 2: "I-PER"}})
    model = TaskModel(BertEncoder(config, add_pooler=False), ClassifierHead(config), "tagging").eval()
    save_pretrained(tmp_path, model.encoder, model.heads())
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    ref = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    x = _inputs(config.vocab_size)
    m = x["attention_mask"].bool()
    with torch.no_grad():
        ours, theirs = model(**x), ref(**x).logits
    assert (ours[m] - theirs[m]).abs().max() < 1e-5

    # A transformers-written folder loads back as a token classifier (not a sequence classifier).
    ref.save_pretrained(tmp_path / "hf")
    back = load_pretrained(tmp_path / "hf", tokenizer=False)
    assert set(back.heads) == {"token_classifier"} and back.encoder.pooler is None
    with torch.no_grad():
        again = back.heads["token_classifier"].eval()(back.encoder.eval()(**x).last_hidden_state)
    assert (again[m] - theirs[m]).abs().max() < 1e-5


def test_question_answering_head_parity_both_ways(tmp_path, tiny_config):
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config, add_pooler=False).eval()
    heads = build_heads(tiny_config, ["qa"])
    save_pretrained(tmp_path, encoder, heads)
    ref = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    x = _inputs(tiny_config.vocab_size)
    with torch.no_grad():
        start, end = heads["qa"](encoder(**x).last_hidden_state).unbind(-1)  # (B, T) each
        theirs = ref(**x)
    assert (start - theirs.start_logits).abs().max() < 1e-5 and (end - theirs.end_logits).abs().max() < 1e-5
    ref.save_pretrained(tmp_path / "hf")
    back = load_pretrained(tmp_path / "hf", tokenizer=False)
    assert set(back.heads) == {"qa"}
    assert torch.equal(back.heads["qa"].weight, heads["qa"].weight)


def test_layerwise_learning_rates(tiny_model):
    model, _ = build_model(tiny_model, "classification", ["a", "b"])
    groups = layerwise_param_groups(model, lr=1.0, weight_decay=0.01, layer_decay=0.5)
    lrs = {}
    for g in groups:
        for p in g["params"]:
            lrs[id(p)] = (g["lr"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert lrs[id(named["encoder.embeddings.word_embeddings.weight"])] == (0.125, 0.01)
    assert lrs[id(named["encoder.layers.0.attn.query.weight"])] == (0.25, 0.01)
    assert lrs[id(named["encoder.layers.1.attn_norm.weight"])] == (0.5, 0.0)
    assert lrs[id(named["head.out.weight"])] == (1.0, 0.01) and lrs[id(named["encoder.pooler.bias"])] == (1.0, 0.0)
    assert len(lrs) == len(named)


def test_dropout_override_reaches_every_dropout_and_the_saved_config(tiny_model):
    from bertkit.finetune.model import set_dropout

    model, _ = build_model(tiny_model, "classification", ["a", "b"])
    set_dropout(model, 0.3)
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    attention = [m.dropout_p for m in model.modules() if hasattr(m, "dropout_p")]
    assert dropouts and attention and set(dropouts) == set(attention) == {0.3}
    config = model.encoder.config
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.3
    model.train()
    x = torch.randint(5, 100, (4, 12))
    assert not torch.equal(model.encoder(x).last_hidden_state, model.encoder(x).last_hidden_state)
    set_dropout(model, 0.0)
    assert torch.equal(model.encoder(x).last_hidden_state, model.encoder(x).last_hidden_state)


# ------------------------------------------------------------------------------------------- bad input


def _user_error(capsys, args: list[str], fragment: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertkit: error:") and fragment in err[0], err


def test_bad_input_is_one_line_error(tmp_path, capsys, tiny_model):
    (tmp_path / "train.csv").write_text("text,label\n好,pos\n差,neg\n", "utf-8")
    (tmp_path / "test.csv").write_text("text,label\n好,pos\n一般,neutral\n", "utf-8")
    (tmp_path / "nocol.csv").write_text("text,y\n好,pos\n", "utf-8")
    (tmp_path / "empty.jsonl").write_text("", "utf-8")
    base = ["finetune", "--task", "classification", "--model", str(tiny_model), "--out", str(tmp_path / "run")]
    train = ["--train", str(tmp_path / "train.csv")]
    _user_error(
        capsys,
        [*base, *train, "--test", str(tmp_path / "test.csv")],
        "test.csv: line 3: label 'neutral' does not occur in the training file",
    )
    _user_error(capsys, [*base, "--train", str(tmp_path / "nocol.csv")], "nocol.csv: line 2: no column 'label'")
    _user_error(capsys, [*base, "--train", str(tmp_path / "empty.jsonl")], "empty.jsonl: empty file")
    _user_error(capsys, [*base, *train, "--max-seq-length", "65"], "more than the model's max_position_embeddings")
    _user_error(capsys, ["evaluate", "--model", str(tiny_model), "--task", "sentiment"], "no classification head")
    _user_error(capsys, [*base, *train, "--label-smoothing", "1.0"], "--label-smoothing must be in [0, 1)")
    ner = ["finetune", "--task", "peoples-daily-ner", "--model", str(tiny_model), "--out", str(tmp_path / "ner")]
    _user_error(capsys, [*ner, "--crf", "--label-smoothing", "0.1"], "a CRF has none to smooth")


def test_label_smoothing_reaches_the_training_loss(tmp_path, capsys, tiny_model):
    model, _ = build_model(tiny_model, "classification", ["neg", "pos"])
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    batch = {"labels": torch.tensor([0, 1])}
    logp = torch.log_softmax(logits, -1)
    expected = -(0.8 * logp[[0, 1], [0, 1]] + 0.2 * logp.mean(-1)).sum()
    assert model.loss_sum(logits, batch, 0.2).item() == pytest.approx(expected.item(), rel=1e-6)
    assert model.loss_sum(logits, batch).item() == pytest.approx(-logp[[0, 1], [0, 1]].sum().item(), rel=1e-6)
    # and the flag reaches the loop
    common = ["--task", "sentiment", "--model", str(tiny_model), "--max-train-examples", "16"]
    _finetune(
        capsys,
        *common,
        "--max-eval-examples",
        "8",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--label-smoothing",
        "0.2",
    )
    assert json.loads((tmp_path / "run" / "finetune_config.json").read_text())["label_smoothing"] == 0.2


# ----------------------------------------------------------------------- regression and multiple choice


def test_regression_from_cli_loads_in_transformers(tmp_path, capsys, tiny_model):
    """Float labels: one output, squared error, problem_type "regression"; Pearson and Spearman on dev."""
    rows = [(f"{a}{b}的东西", 4.5 - 0.25 * i) for i, a in enumerate(GOOD) for b in "东西产品"]
    rows += [(f"{a}{b}的东西", -1.5 + 0.25 * i) for i, a in enumerate(BAD) for b in "东西产品"]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "score": y}) + "\n" for t, y in rows), "utf-8")
    (tmp_path / "dev.csv").write_text("text,score\n" + "".join(f"{t},{y}\n" for t, y in rows[::3]), "utf-8")
    run = tmp_path / "run"
    out = _finetune(
        capsys,
        *["--task", "regression", "--model", str(tiny_model), "--out", str(run), "--label-column", "score"],
        *["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.csv")],
    )
    assert "dev pearson" in out
    _assert_loss_falls(run)
    summary = json.loads((run / "summary.json").read_text())
    assert {"mse", "pearson", "spearman"} <= set(summary["dev"]) and -1 <= summary["dev"]["pearson"] <= 1

    config = json.loads((run / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    assert ref.config.problem_type == "regression" and ref.config.num_labels == 1
    model, tok = load_task_model(run / "model")
    assert model.kind == "regression"
    batch = tok(["好的东西", "差的产品"])
    with torch.no_grad():
        assert (model(**batch) - ref(**batch).logits).abs().max() < 1e-5

    assert (
        main(
            ["evaluate", "--model", str(run / "model"), "--task", "regression", "--data", str(tmp_path / "dev.csv")]
            + ["--label-column", "score"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["pearson"] == pytest.approx(summary["dev"]["pearson"], abs=1e-6)
    (rec,) = predict_texts(model, tok, ["好的东西"])
    assert set(rec) == {"text", "value"} and isinstance(rec["value"], float)

    (tmp_path / "words.csv").write_text("text,score\n好,4.5\n差,high\n", "utf-8")
    _user_error(
        capsys,
        ["finetune", "--task", "regression", "--model", str(tiny_model), "--out", str(tmp_path / "bad")]
        + ["--train", str(tmp_path / "words.csv"), "--label-column", "score"],
        "words.csv: line 3: column 'score' should be a number, got \"high\"",
    )


def _choices(n: int) -> list[dict]:
    """Who likes what: the right choice is the fruit the context names, the others are things that are not
    fruit (so that a tiny model learns it in a few steps); 3 or 4 choices."""
    names, fruits, things = ["张三", "李四", "王五", "赵六"], ["苹果", "香蕉", "西瓜", "葡萄"], ["汽车", "电脑", "桌子"]
    out = []
    for k in range(n):
        name, fruit = names[k % 4], fruits[(k // 4 + k) % 4]
        choices = [things[(k + j) % 3] for j in range(2 + k % 2)]
        choices.insert(k % (len(choices) + 1), fruit)
        out.append(
            {
                "context": f"{name}喜欢{fruit}。",
                "question": f"{name}喜欢什么？",
                "choices": choices,
                "label": choices.index(fruit),
            }
        )
    return out


def test_multiple_choice_from_cli_loads_in_transformers_both_ways(tmp_path, capsys, tiny_model):
    lines = _choices(32)
    assert {len(x["choices"]) for x in lines} == {3, 4}  # batches mix 3- and 4-choice questions
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    run = tmp_path / "run"
    _finetune(
        capsys,
        *["--task", "multiple-choice", "--model", str(tiny_model), "--out", str(run)],
        *["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "train.jsonl")],
        *["--batch-size", "4", "--lr", "1e-2"],  # the scores start near 0: a few more, larger steps
    )
    _assert_loss_falls(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and summary["dev"]["examples"] == 32

    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForMultipleChoice"]
    ref = transformers.AutoModelForMultipleChoice.from_pretrained(run / "model").eval()
    model, tok = load_task_model(run / "model")
    assert model.kind == "multiple_choice"
    flat = tok(["张三喜欢苹果。"] * 3 + ["李四喜欢西瓜。"] * 3, ["苹果", "香蕉", "葡萄", "西瓜", "苹果", "葡萄"])
    batch = {k: v.view(2, 3, -1) for k, v in flat.items()}  # (B, K, T)
    with torch.no_grad():
        ours, theirs = model(**batch), ref(**batch).logits
    assert ours.shape == (2, 3) and (ours - theirs).abs().max() < 1e-5

    # A folder transformers wrote loads back as a multiple-choice model (not a 1-label sequence classifier).
    ref.save_pretrained(tmp_path / "hf")
    tok.save(tmp_path / "hf")
    back, _ = load_task_model(tmp_path / "hf")
    assert back.kind == "multiple_choice"
    with torch.no_grad():
        assert (back(**batch) - theirs).abs().max() < 1e-5

    assert (
        main(
            ["evaluate", "--model", str(run / "model"), "--task", "multiple-choice"]
            + ["--data", str(tmp_path / "train.jsonl")]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["dev"]["accuracy"])
    unlabelled = [{k: v for k, v in x.items() if k != "label"} for x in lines[:3]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in unlabelled), "utf-8")
    assert (
        main(
            ["predict", "--model", str(run / "model"), "--input", str(tmp_path / "in.jsonl")]
            + ["--output", str(tmp_path / "out.jsonl")]
        )
        == 0
    )
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    for rec, x in zip(records, unlabelled, strict=True):
        assert len(rec["scores"]) == len(x["choices"]) and sum(rec["scores"]) == pytest.approx(1, abs=1e-4)
        assert rec["choice"] == x["choices"][rec["label"]] and rec["score"] == max(rec["scores"])

    (tmp_path / "bad.jsonl").write_text(json.dumps({**lines[0], "label": 4}, ensure_ascii=False) + "\n", "utf-8")
    base = ["finetune", "--task", "multiple-choice", "--model", str(tiny_model), "--out", str(tmp_path / "x")]
    n = len(lines[0]["choices"])
    _user_error(
        capsys,
        [*base, "--train", str(tmp_path / "bad.jsonl")],
        f"bad.jsonl: line 1: field 'label' should be the index of the right choice, 0 to {n - 1}, got 4",
    )
    squad = Path(__file__).parent / "data" / "squad_v2_tiny.json"
    _user_error(
        capsys,
        ["evaluate", "--model", str(run / "model"), "--task", "qa", "--data", str(squad)],
        "the model picks one of several choices but the task has questions with answers in a context",
    )


def test_gradient_accumulation_takes_the_same_steps(tmp_path, capsys):
    """batch 4 x 2 micro-batches = batch 8: the same weights after training (dropout off), the same logged loss."""
    tok = Tokenizer.train(iter(["好 差 东西 产品 很 不"] * 2), vocab_size=40, min_frequency=1)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    save_pretrained(tmp_path / "init", BertEncoder(config), {}, tok)
    rows = [
        "很好,pos",
        "好东西,pos",
        "好产品,pos",
        "很好的东西,pos",
        "很差,neg",
        "差东西,neg",
        "不好,neg",
        "很差的产品,neg",
    ]
    (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n", "utf-8")

    def run(name: str, batch_size: int, grad_accum: int) -> tuple[dict, dict]:
        args = ["--task", "classification", "--model", str(tmp_path / "init"), "--out", str(tmp_path / name)]
        args += ["--train", str(tmp_path / "train.csv"), "--batch-size", str(batch_size)]
        _finetune(capsys, *args, "--grad-accum", str(grad_accum), "--epochs", "2", "--max-seq-length", "16")
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        return summary, load_pretrained(tmp_path / name / "model", tokenizer=False).encoder.state_dict()

    whole, w_whole = run("whole", 8, 1)
    accumulated, w_acc = run("accumulated", 4, 2)
    partial, w_partial = run("partial", 4, 3)  # an epoch of 2 micro-batches: one step over both
    small, w_small = run("small", 4, 1)
    assert whole["steps"] == accumulated["steps"] == partial["steps"] == 2 and small["steps"] == 4
    for weights in (w_acc, w_partial):
        assert max((weights[k] - w_whole[k]).abs().max() for k in w_whole) < 1e-5
    assert max((w_small[k] - w_whole[k]).abs().max() for k in w_whole) > 1e-3  # the test can tell them apart
    losses = [_epoch_losses(tmp_path / name) for name in ("whole", "accumulated")]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_learning_rate_grid_is_chosen_on_dev_and_only_the_choice_sees_test(tmp_path, capsys, tiny_model):
    run = tmp_path / "grid"
    args = ["--task", "sentiment", "--model", str(tiny_model), "--max-train-examples", "48"]
    args += ["--max-eval-examples", "24", "--out", str(run), "--epochs", "1"]
    code = main(
        ["finetune", "--batch-size", "8", "--max-seq-length", "32", "--precision", "fp32", *args]
        + ["--lr", "1e-4", "3e-3"]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["grid"]) == {"0.0001", "0.003"} and "chose lr" in out
    best = max(summary["grid"], key=summary["grid"].get)
    assert summary["lr"] == float(best)
    for lr in ("0.0001", "0.003"):
        sub = json.loads((run / f"lr-{float(lr):g}" / "summary.json").read_text())
        assert sub["dev"]["accuracy"] == summary["grid"][lr]
        assert bool(sub["test"]) == (lr == best)  # the test split is scored by the chosen rate only
    assert summary["test"]["mean"] == summary["runs"][0]["test"]["accuracy"]


def test_default_learning_rates_follow_the_model_width(tiny_model):
    from bertkit.cli.finetuning import BERT_LRS, SMALL_MODEL_LRS, default_lrs

    assert default_lrs(str(tiny_model)) == SMALL_MODEL_LRS  # 32 wide
    assert default_lrs("no/such/folder") == BERT_LRS


def test_a_non_finite_loss_skips_the_step_and_several_stop_the_run(tmp_path, capsys, tiny_model, monkeypatch):
    rows = ["很好,pos", "好东西,pos", "很差,neg", "差东西,neg"] * 4
    (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n", "utf-8")
    real = TaskModel.loss_sum
    calls = {"n": 0}

    def sometimes_nan(self, logits, batch, smoothing=0.0):
        calls["n"] += 1
        loss = real(self, logits, batch, smoothing)
        return loss * float("nan") if calls["n"] in bad else loss

    monkeypatch.setattr(TaskModel, "loss_sum", sometimes_nan)
    args = ["finetune", "--task", "classification", "--model", str(tiny_model), "--train", str(tmp_path / "train.csv")]
    args += ["--batch-size", "4", "--epochs", "2", "--max-seq-length", "16", "--lr", "1e-3", "--log-every", "1"]
    bad = {2}  # one bad step of 8: skipped, the run goes on and its weights stay finite
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert "warning: step 2: loss nan; the update is skipped (1 in a row)" in capsys.readouterr().err
    model, _ = load_task_model(tmp_path / "one" / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    calls["n"], bad = 0, set(range(3, 100))  # from step 3 on: the run stops after 5 in a row
    assert main([*args, "--out", str(tmp_path / "many")]) == 2
    err = capsys.readouterr().err
    assert "the loss was not finite for 5 steps in a row (up to step 7)" in err.splitlines()[-1]
