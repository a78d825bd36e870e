"""The embedding losses against hand computations on tiny batches, and GradCache's gradients against the plain
step's."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import helpers
import pytest
import torch

from bertkit.hf import save_pretrained
from bertkit.model import BertEncoder
from bertkit.retrieval.cached import cached_step, embed_ids, plain_step
from bertkit.retrieval.losses import cosent_loss, in_batch_loss
from bertkit.retrieval.sentence_model import SentenceModel
from bertkit.tokenizer import Tokenizer


def cos(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


Q = [[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]]
P = [[2.0, 0.5], [0.5, 0.5], [-1.0, 1.0]]
N = [[1.0, 1.0], [0.0, -1.0]]


def hand_ce(rows: list[list[float]], target: int) -> float:
    return -rows[target] + math.log(sum(math.exp(x) for x in rows))


def test_in_batch_loss_is_the_diagonals_cross_entropy_over_cosines():
    scale = 20.0
    docs = P + N
    expected = sum(hand_ce([scale * cos(q, d) for d in docs], i) for i, q in enumerate(Q)) / len(Q)
    got = in_batch_loss(torch.tensor(Q), torch.tensor(P), torch.tensor(N), scale=scale)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    no_negatives = sum(hand_ce([scale * cos(q, d) for d in P], i) for i, q in enumerate(Q)) / len(Q)
    assert float(in_batch_loss(torch.tensor(Q), torch.tensor(P), scale=scale)) == pytest.approx(no_negatives, rel=1e-5)


def test_the_symmetric_loss_adds_each_positive_picking_its_query():
    scale = 5.0
    forward = sum(hand_ce([scale * cos(q, d) for d in P], i) for i, q in enumerate(Q)) / 3
    backward = sum(hand_ce([scale * cos(q, p) for q in Q], i) for i, p in enumerate(P)) / 3
    got = in_batch_loss(torch.tensor(Q), torch.tensor(P), scale=scale, symmetric=True)
    assert float(got) == pytest.approx((forward + backward) / 2, rel=1e-5)


def test_cosent_penalises_only_pairs_ranked_against_their_scores():
    a, b = torch.tensor(Q), torch.tensor(P)
    scores = torch.tensor([3.0, 1.0, 2.0])
    c = [20 * cos(x, y) for x, y in zip(Q, P, strict=True)]
    wanted = [(i, j) for i in range(3) for j in range(3) if scores[i] > scores[j]]
    expected = math.log(1 + sum(math.exp(c[j] - c[i]) for i, j in wanted))
    assert float(cosent_loss(a, b, scores)) == pytest.approx(expected, rel=1e-5)
    # cosines already in the scores' order, far apart: the loss is near 0; reversed: large
    ordered = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    ref = torch.tensor([[1.0, 0.0]] * 3)
    assert float(cosent_loss(ordered, ref, torch.tensor([3.0, 1.0, 2.0]))) < 0.01
    assert float(cosent_loss(ordered, ref, torch.tensor([1.0, 3.0, 2.0]))) > 5


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[float, Path]:
    """Tiny random BERT folders by dropout rate (0.1 is BERT's)."""
    root = tmp_path_factory.mktemp("tiny")
    lines = ["我们今天在北京开会。", "今天天气很好。", "苹果和华为哪个牌子好", "我喜欢吃苹果"] * 5
    tok = Tokenizer.train(iter(lines), vocab_size=120, min_frequency=1)
    found = {}
    for p in (0.0, 0.1):
        torch.manual_seed(0)
        config = replace(helpers.tiny_config(tok.vocab_size), hidden_dropout_prob=p, attention_probs_dropout_prob=p)
        save_pretrained(root / str(p), BertEncoder(config), {}, tok)
        found[p] = root / str(p)
    return found


@pytest.fixture(scope="module")
def tiny_folder(folders):
    return folders[0.1]


TEXTS = ["我们今天在北京开会。", "今天天气很好。", "苹果和华为哪个牌子好", "我喜欢吃苹果", "北京天气", "开会"]


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_cached_step_gives_the_plain_steps_loss_and_gradients(folders, dropout):
    model = SentenceModel.from_folder(folders[dropout])
    model.train()
    ids = model.tokenize(TEXTS)
    groups = [ids[:3], ids[3:], ids[1:3]]
    pad = model.tokenizer.pad_token_id

    def loss_fn(q, p, n):
        return in_batch_loss(q, p, n)

    def run(step, **kw):
        torch.manual_seed(3)
        model.zero_grad(set_to_none=True)
        loss = step(model, groups, loss_fn, pad, **kw)
        return loss, gradients(model), torch.rand(1)  # the random stream after the step, too

    plain = run(plain_step)
    # without dropout any chunk size gives the same gradients; with it, a chunk that holds each group whole
    # draws the same masks as the plain step (each group in one pass, in the same order)
    for chunk in [1, 2, 3] if dropout == 0 else [3]:
        cached = run(cached_step, chunk=chunk)
        assert cached[0] == pytest.approx(plain[0], rel=1e-5)
        assert plain[1].keys() == cached[1].keys()
        for name, g in plain[1].items():
            torch.testing.assert_close(cached[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
        assert torch.equal(cached[2], plain[2])


def test_simcse_two_dropout_passes_differ_and_training_pulls_them_together(tiny_folder):
    model = SentenceModel.from_folder(tiny_folder)
    model.train()
    ids = model.tokenize(TEXTS)
    pad = model.tokenizer.pad_token_id
    torch.manual_seed(0)
    a, b = embed_ids(model, ids, pad), embed_ids(model, ids, pad)
    assert not torch.equal(a, b)  # dropout: the positive is the text under another mask

    def loss_fn(x, y):
        return in_batch_loss(x, y)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        losses.append(plain_step(model, [ids, ids], loss_fn, pad))
        optimizer.step()
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
