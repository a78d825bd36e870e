"""ELECTRA's discriminator learns on the built-in corpus: its RTD loss falls well below the base-rate entropy
H(p) of the replaced share p (`rtd_base_rate_loss`), the loss of a discriminator that has learnt nothing.

A deep, narrow post-LayerNorm discriminator at a high learning rate with a short warm-up is where it failed:
its RTD head started at p = 0.5, the first steps fitted the base rate through every layer, and every token's
last hidden state became the same, pinning the RTD loss at H(p) for good."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import one_thread  # noqa: F401 - module-wide single thread

from bertkit.cli import main
from bertkit.config import from_preset
from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, MLMHead, RTDHead
from bertkit.pretrain.masking import IGNORE_INDEX
from bertkit.pretrain.objectives import ElectraPretraining, electra_generator_config

STEPS = 300
RUN = (
    "--recipe electra --num-hidden-layers 8 --hidden-size 64 --vocab-size 1500 --max-seq-length 32 "
    f"--batch-size 16 --steps {STEPS} --lr 1e-3 --warmup 10 --precision fp32 --dropout 0 --log-every 20 "
    "--eval-every 100000 --save-every 100000 --seed 0"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from bertkit.builtin import peoples_daily_raw_lines

    d = tmp_path_factory.mktemp("electra-learns")
    lines = [line for line, _ in zip(peoples_daily_raw_lines(), range(1500), strict=False)]
    (d / "corpus.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return d


@pytest.mark.slow  # about 30 s on one thread
def test_the_discriminator_loss_falls_well_below_the_base_rate_entropy(corpus, tmp_path):
    argv = f"pretrain --out {tmp_path}/run --corpus {corpus}/corpus.txt --cache-dir {corpus}/cache {RUN}"
    assert main(argv.split()) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step" in r]
    assert all(0.3 < r["rtd_base_rate_loss"] < 0.45 for r in rows)  # p ≈ 0.14 replaced: H(p) ≈ 0.40
    gaps = {r["step"]: r["rtd_base_rate_loss"] - r["rtd_loss"] for r in rows}
    # While the generator's samples are still rare tokens the discriminator tells them apart easily...
    assert max(gaps.values()) > 0.03, gaps
    # ...and once they are unigram-like it keeps a margin that a discriminator at the base rate never has
    # (measured: 0.008-0.012 here; at the base rate -0.003-0.000).
    late = [g for step, g in gaps.items() if step > STEPS // 2]
    assert min(late) > 0.004 and sum(late) / len(late) > 0.006, gaps


def test_the_head_starts_at_the_base_rate_and_the_logged_base_rate_loss_is_its_entropy():
    torch.manual_seed(0)
    disc = from_preset(
        "electra-small", vocab_size=80, num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
        intermediate_size=128, embedding_size=32,
    )  # fmt: skip
    gen = electra_generator_config(disc, 0.25)
    model = ElectraPretraining(BertEncoder(gen), MLMHead(gen), BertEncoder(disc), RTDHead(disc))
    assert torch.sigmoid(model.rtd.prediction.bias).item() == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="replaced_prior"):
        ElectraPretraining(BertEncoder(gen), MLMHead(gen), BertEncoder(disc), RTDHead(disc), replaced_prior=0)
    ids = torch.randint(5, 80, (4, 16))
    chosen = torch.rand(ids.shape) < 0.3
    chosen[:, 0] = False
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    out = model({"input_ids": torch.where(chosen, 4, ids), "labels": labels, "attention_mask": torch.ones_like(ids)})
    k, n = out.metrics["replaced_share"]
    p = k / n
    total, count = out.metrics["rtd_base_rate_loss"]
    assert count == n and total / count == pytest.approx(-p * math.log(p) - (1 - p) * math.log(1 - p))
    truth = out.tensors["rtd_labels"].flatten().float()  # H(p) is the loss of guessing p for every token
    assert total == pytest.approx(F.binary_cross_entropy(torch.full_like(truth, p), truth, reduction="sum").item())
