"""crf.py: the forward algorithm and Viterbi against brute-force enumeration of every tag sequence, the tag
scheme constraints, and `--crf` end to end: the loss falls, the folder loads in transformers unchanged."""

import itertools
import json

import pytest
import torch
from helpers import one_thread, save_tiny_bert  # noqa: F401 - an autouse fixture

from bertkit.cli.table import main
from bertkit.finetune.crf import CRF, FORBIDDEN, allowed_transitions, compact
from bertkit.finetune.model import load_task_model
from bertkit.finetune.predict import predict_texts
from bertkit.tokenizer import Tokenizer

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_crf(labels, scheme, seed=0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(labels, scheme)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def _brute_force(crf: CRF, emissions: torch.Tensor, n: int) -> dict[tuple[int, ...], float]:
    """The score of every tag sequence of length n, by the definition in crf.py's docstring."""
    with torch.no_grad():
        start, trans, end = crf.scores()
    C = emissions.shape[-1]
    scores = {}
    for tags in itertools.product(range(C), repeat=n):
        s = start[tags[0]] + end[tags[-1]] + sum(emissions[t, y] for t, y in enumerate(tags))
        s = s + sum(trans[a, b] for a, b in itertools.pairwise(tags))
        scores[tags] = float(s)
    return scores


def test_a_window_cut_from_a_sentence_has_free_edges():
    """A row marked as not starting (ending) its sentence gets no start (end) score, learned or forbidden: its
    log Z and gold score are the brute-force ones without that term, and a gold path that starts inside a
    word (BMES: E ... B) costs no FORBIDDEN."""
    bmes = ["B", "M", "E", "S"]
    crf = _random_crf(bmes, "bmes", seed=3)
    emissions = torch.randn(1, 4, 4)
    mask = torch.ones(1, 4, dtype=torch.bool)
    gold = torch.tensor([[2, 3, 3, 0]])  # E S S B: cut inside a word at both ends
    with torch.no_grad():
        start, trans, end = crf.scores()
    for s_on, e_on in itertools.product([True, False], repeat=2):
        scores = {}
        for tags in itertools.product(range(4), repeat=4):
            s = sum(emissions[0, t, y] for t, y in enumerate(tags)) + sum(
                trans[a, b] for a, b in itertools.pairwise(tags)
            )
            s = s + (start[tags[0]] if s_on else 0) + (end[tags[-1]] if e_on else 0)
            scores[tags] = float(s)
        log_z = torch.logsumexp(torch.tensor(list(scores.values())), 0)
        nll = crf.nll(emissions, gold, mask, torch.tensor([s_on]), torch.tensor([e_on]))
        assert nll.item() == pytest.approx((log_z - scores[(2, 3, 3, 0)]).item(), rel=1e-5, abs=1e-4)
        assert (nll.item() > -FORBIDDEN / 2) == (s_on or e_on)  # only a sentence boundary forbids E first, B last


def test_bio_and_bmes_constraints_by_hand():
    start, trans, end = allowed_transitions(BIO, "bio")
    assert start.tolist() == [True, True, False, True, False]  # no sequence starts inside an entity
    assert end.all()
    allowed = {(BIO[i], BIO[j]) for i in range(5) for j in range(5) if trans[i, j]}
    into_i_per = {a for a, b in allowed if b == "I-PER"}
    assert into_i_per == {"B-PER", "I-PER"}  # not from O, not from a LOC entity
    assert ("O", "B-LOC") in allowed and ("I-PER", "O") in allowed and ("I-LOC", "B-PER") in allowed
    assert len(allowed) == 25 - 2 * 3  # each I-X is forbidden after the 3 tags that are not B-X / I-X

    bmes = ["B", "M", "E", "S"]
    start, trans, end = allowed_transitions(bmes, "bmes")
    assert start.tolist() == [True, False, False, True] and end.tolist() == [False, False, True, True]
    follows = {a: "".join(b for j, b in enumerate(bmes) if trans[i, j]) for i, a in enumerate(bmes)}
    assert follows == {"B": "ME", "M": "ME", "E": "BS", "S": "BS"}
    assert all(x.all() for x in allowed_transitions(["X", "Y"], None))


@pytest.mark.parametrize("scheme", [None, "bio"])
def test_forward_algorithm_and_gold_score_match_brute_force(scheme):
    crf = _random_crf(BIO[:3], scheme)
    torch.manual_seed(1)
    emissions = torch.randn(3, 5, 3)
    lengths = [5, 3, 1]
    mask = torch.arange(5) < torch.tensor(lengths)[:, None]
    gold = torch.randint(0, 3, (3, 5))
    with torch.no_grad():
        log_z, nll = crf.log_partition(emissions, mask), crf.nll(emissions, gold, mask)
    for b, n in enumerate(lengths):
        scores = _brute_force(crf, emissions[b], n)
        expected = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
        assert float(log_z[b]) == pytest.approx(float(expected), abs=1e-4)
        gold_score = scores[tuple(gold[b, :n].tolist())]
        # float32 next to a -10,000 penalty: relative precision
        assert float(nll[b]) == pytest.approx(float(expected) - gold_score, rel=1e-6, abs=1e-4)
    if scheme == "bio":  # a forbidden gold sequence (O then I-PER) costs the penalty: it is all but impossible
        with torch.no_grad():
            bad = crf.nll(emissions[:1, :2], torch.tensor([[0, 2]]), torch.ones(1, 2, dtype=torch.bool))
        assert float(bad) > -FORBIDDEN / 2


@pytest.mark.parametrize("scheme", [None, "bio"])
def test_viterbi_matches_brute_force(scheme):
    for seed in range(5):
        crf = _random_crf(BIO, scheme, seed)
        torch.manual_seed(100 + seed)
        emissions = torch.randn(2, 4, 5) * 2
        mask = torch.tensor([[True] * 4, [True, True, False, False]])
        paths = crf.decode(emissions, mask)
        for b, n in enumerate((4, 2)):
            scores = _brute_force(crf, emissions[b], n)
            assert tuple(paths[b]) == max(scores, key=scores.get)
            if scheme == "bio":  # the best sequence is a valid IOB2 one: every I-X continues an X entity
                tags = [BIO[i] for i in paths[b]]
                for prev, tag in zip(["O", *tags], tags, strict=False):
                    assert not tag.startswith("I-") or prev[2:] == tag[2:], tags


def test_untrained_crf_decodes_as_argmax_and_compact_keeps_order():
    crf = CRF(BIO)  # zero scores, no constraints
    emissions = torch.randn(3, 6, 5)
    mask = torch.ones(3, 6, dtype=torch.bool)
    assert crf.decode(emissions, mask) == emissions.argmax(-1).tolist()

    labels = torch.tensor([[-100, 1, -100, 2, -100], [-100, -100, -100, -100, -100], [-100, 0, 3, 4, -100]])
    emissions = torch.arange(3 * 5, dtype=torch.float)[:, None].expand(-1, 2).reshape(3, 5, 2)
    em, tags, m, keep = compact(emissions, labels)
    assert tags[m].tolist() == [1, 2, 0, 3, 4] and m.sum(1).tolist() == [2, 3]  # the unlabelled row is dropped
    assert keep.tolist() == [True, False, True]
    assert em[0, :2, 0].tolist() == [1.0, 3.0] and em[1, :3, 0].tolist() == [11.0, 12.0, 13.0]


# ------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    lines = ["江泽民在北京会见李鹏。新华社报道上海的会议。", "Bill Gates met Jiang Zemin in Beijing"] * 3
    tok = Tokenizer.train(iter(lines), vocab_size=200, min_frequency=1)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny"), tok)


def test_ner_with_crf_from_cli_loads_in_transformers(tmp_path, capsys, tiny_model):
    transformers = pytest.importorskip("transformers")
    sentences = [("江泽民", "PER", "在北京"), ("李鹏", "PER", "到上海"), ("新华社", "ORG", "报道")] * 8
    lines = []
    for name, etype, rest in sentences:
        lines += [f"{c} {'B' if i == 0 else 'I'}-{etype}" for i, c in enumerate(name)] + [f"{c} O" for c in rest]
        lines.append("")
    (tmp_path / "train.conll").write_text("\n".join(lines), "utf-8")
    run = tmp_path / "run"
    args = ["finetune", "--task", "ner", "--model", str(tiny_model), "--out", str(run), "--precision", "fp32"]
    args += ["--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "train.conll")]
    args += ["--epochs", "4", "--batch-size", "8", "--lr", "5e-3", "--warmup", "0", "--max-seq-length", "16"]
    assert main([*args, "--crf", "--stride", "4"]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["eval"]["train_loss"] for r in rows if "eval" in r]
    assert losses[-1] < losses[0], losses
    assert (run / "model" / "crf.safetensors").is_file()

    model, tok = load_task_model(run / "model")
    assert model.crf is not None and model.scheme == "bio"
    assert model.crf.transitions.abs().sum() > 0  # learned, and read back
    # The CRF forbids O -> I-PER whatever it learned; the labels come back from config.json in the same order.
    o, i_per = model.labels.index("O"), model.labels.index("I-PER")
    assert float(model.crf.scores()[1][o, i_per].detach()) < FORBIDDEN / 2

    ref = transformers.AutoModelForTokenClassification.from_pretrained(run / "model").eval()
    batch = tok(["江泽民在北京", "新华社报道"])
    with torch.no_grad():
        ours, theirs = model(**batch), ref(**batch).logits
    m = batch["attention_mask"].bool()
    assert (ours[m] - theirs[m]).abs().max() < 1e-5  # transformers gives the emissions, unchanged

    # Viterbi decoding: whatever the tiny model predicts, entities are valid spans of the text.
    text = "李鹏在北京会见江泽民" * 3  # 30 characters in windows of 14
    (rec,) = predict_texts(model, tok, [text])
    for ent in rec["entities"]:
        assert text[ent["start"] : ent["end"]] == ent["text"]
    capsys.readouterr()
    assert (
        main(["evaluate", "--model", str(run / "model"), "--task", "ner", "--data", str(tmp_path / "train.conll")]) == 0
    )
    assert 0 <= json.loads(capsys.readouterr().out)["f1"] <= 1

    # The same run without --crf into the same folder (--overwrite) leaves no stale CRF behind.
    assert main([*args, "--epochs", "1"]) == 2  # refused without --overwrite
    assert main([*args, "--epochs", "1", "--overwrite"]) == 0
    assert not (run / "model" / "crf.safetensors").exists()
    assert load_task_model(run / "model")[0].crf is None


def test_crf_trained_on_windows_cut_inside_entities_learns_and_its_loss_falls(tmp_path, capsys, tiny_model):
    # 5-word sentences of 12 characters read in windows of 6: most windows start or end inside an entity
    sentences = [("江泽民", "PER", "在北京"), ("李鹏", "PER", "到上海"), ("新华社", "ORG", "报道")]
    lines = []
    for k in range(12):
        for name, etype, rest in [sentences[(k + j) % 3] for j in range(2)]:
            lines += [f"{c} {'B' if i == 0 else 'I'}-{etype}" for i, c in enumerate(name)] + [f"{c} O" for c in rest]
        lines.append("")
    (tmp_path / "train.conll").write_text("\n".join(lines), "utf-8")
    run = tmp_path / "run"
    args = ["finetune", "--task", "ner", "--model", str(tiny_model), "--out", str(run), "--precision", "fp32"]
    args += ["--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "train.conll"), "--crf"]
    args += ["--epochs", "6", "--batch-size", "8", "--lr", "5e-3", "--warmup", "0", "--max-seq-length", "8"]
    assert main([*args, "--stride", "3"]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["eval"]["train_loss"] for r in rows if "eval" in r]
    # per word; a cut window charged the sentence-start rules would cost ~FORBIDDEN / 6 words on average
    assert max(losses) < 5 and losses[-1] < losses[0] / 2, losses
