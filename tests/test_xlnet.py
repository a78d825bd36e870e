"""XLNet's permutation language model on BERT's blocks: the masks realise a hand-checked order, the query stream
never sees its own token (nor anything later in the order), and `bertkit pretrain --recipe xlnet` trains a BERT
folder that fine-tunes with BERT's heads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import one_thread  # noqa: F401 - an autouse fixture

from bertkit.cli import main
from bertkit.config import from_preset
from bertkit.hf import load_pretrained
from bertkit.model import BertEncoder, MLMHead
from bertkit.pretrain.autoregressive import PermutationLMPretraining

CLS, SEP, PAD, MASK = 2, 3, 0, 4


def objective(fraction: float = 0.5, seed: int = 0) -> PermutationLMPretraining:
    torch.manual_seed(seed)
    config = from_preset(
        "bert-tiny-chinese", vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=64
    )
    encoder = BertEncoder(config, add_pooler=False)
    return PermutationLMPretraining(encoder, MLMHead(config), MASK, (PAD, 1, CLS, SEP, MASK), fraction).eval()


def test_the_masks_realise_a_hand_checked_order():
    """[CLS] a b c d [SEP] [PAD] in the order [CLS], [SEP], c, a, d, b: half of the 4 plain tokens (d, b) are
    predicted; h at c sees [CLS], [SEP] and c; g at d sees [CLS], [SEP], c and a, not d itself."""
    plm = objective(fraction=0.5)
    ids = torch.tensor([[CLS, 10, 11, 12, 13, SEP, PAD]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0]])}
    rank = torch.tensor([[0, 3, 5, 2, 4, 1, 6]])  # positions 0..6: [CLS] a b c d [SEP] [PAD]
    content, query, targets = plm.masks(batch | {"perm_rank": rank})
    assert targets[0].tolist() == [False, False, True, False, True, False, False]  # b and d: the last two
    sees = {i: [j for j in range(7) if content[0, 0, i, j]] for i in range(6)}
    assert sees[3] == [0, 3, 5]  # c: [CLS], itself, [SEP]
    assert sees[2] == [0, 1, 2, 3, 4, 5]  # b, last in the order, sees everything real
    query_sees = {i: [j for j in range(7) if query[0, 0, i, j]] for i in (2, 4)}
    assert query_sees[4] == [0, 1, 3, 5]  # d: [CLS], a, c, [SEP]; not itself, not b
    assert query_sees[2] == [0, 1, 3, 4, 5]  # b: everything but itself
    assert plm.units(batch) == {"plm": 2}


def test_drawn_orders_put_specials_first_and_padding_last():
    plm = objective(fraction=1 / 6)
    ids = torch.tensor([[CLS] + list(range(10, 22)) + [SEP, PAD, PAD]] * 3)
    batch = {"input_ids": ids, "attention_mask": (ids != PAD).long()}
    rank = plm.prepare(batch, torch.Generator().manual_seed(0))["perm_rank"]
    for row in rank:
        assert sorted(row.tolist()) == list(range(16))
        assert set(row[[0, 13]].tolist()) == {0, 1} and set(row[14:].tolist()) == {14, 15}
    assert not torch.equal(rank[0], rank[1])  # each sequence its own order
    assert plm.units(batch) == {"plm": 3 * 2}  # 12 plain tokens / 6 = 2 predicted per row


def test_the_query_stream_never_sees_its_own_token_or_later_ones():
    plm = objective(fraction=0.5)
    ids = torch.randint(10, 50, (2, 9))
    ids[:, 0], ids[:, -1] = CLS, SEP
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch = plm.prepare(batch, torch.Generator().manual_seed(1))
    _, _, targets = plm.masks(batch)

    def query_state(x):
        start = plm.encoder.embeddings(torch.full_like(x, MASK))
        content, query, _ = plm.masks(batch | {"input_ids": x})
        out = plm.encoder(x, batch["attention_mask"], attn_mask=content, query_stream=start, query_mask=query)
        return out.query_state

    base = query_state(ids)
    b, i = targets.nonzero()[0].tolist()
    changed = ids.clone()
    later = batch["perm_rank"][b] >= batch["perm_rank"][b, i]  # i itself and every token after it in the order
    changed[b, later] = torch.randint(10, 50, (int(later.sum()),))
    assert torch.equal(query_state(changed)[b, i], base[b, i])
    earlier = (batch["perm_rank"][b] < batch["perm_rank"][b, i]).nonzero()[-1].item()  # one it does see
    changed = ids.clone()
    changed[b, earlier] = (ids[b, earlier] - 10 + 1) % 40 + 10
    assert not torch.allclose(query_state(changed)[b, i], base[b, i])


def test_xlnet_pretrains_from_the_cli_and_fine_tunes_as_a_bert(tmp_path, capsys):
    from bertkit.builtin import peoples_daily_raw_lines

    lines = [line for line, _ in zip(peoples_daily_raw_lines(), range(300), strict=False)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", "utf-8")
    argv = (
        f"pretrain --out {tmp_path}/run --recipe xlnet --preset bert-tiny-chinese --corpus {tmp_path}/corpus.txt "
        f"--cache-dir {tmp_path}/cache --vocab-size 1500 --max-seq-length 64 --batch-size 8 --steps 40 "
        "--hidden-size 64 --precision fp32 --lr 2e-3 --warmup 5 --log-every 1 --eval-every 1000 --seed 0"
    )
    assert main([*argv.split(), "--save-every", "20"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = {r["step"]: r["plm_loss"] for r in rows if "step" in r}
    assert sum(curve[s] for s in range(36, 41)) / 5 < sum(curve[s] for s in range(1, 6)) / 5 - 1.0, curve
    folder = tmp_path / "run" / "model"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    # stopped after the step-20 checkpoint, resumed: the same orders, losses and weights, bit for bit
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run" / "checkpoints" / "step-00000020", resumed / "checkpoints" / "step-00000020")
    kept = [json.dumps(r) for r in rows if r.get("step", 0) <= 20 and "step" in r]
    (resumed / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    shutil.copy(tmp_path / "run" / "train_config.json", resumed / "train_config.json")
    again = argv.replace(f"--out {tmp_path}/run", f"--out {resumed}")
    assert main([*again.split(), "--save-every", "20", "--resume"]) == 0
    redone = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["plm_loss"] for r in redone if "step" in r} == curve
    assert (resumed / "model" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert set(load_pretrained(folder).heads) == {"mlm"}
    argv = (
        f"finetune --model {folder} --out {tmp_path}/ft --task sentiment --max-train-examples 32 "
        "--max-eval-examples 16 --epochs 1 --batch-size 8 --max-seq-length 32 --lr 1e-3 --seeds 0"
    )
    assert main(argv.split()) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("preset", ["gpt2-tiny-chinese"])
def test_a_causal_model_is_refused(preset):
    from bertkit.errors import ConfigError

    config = from_preset(preset, vocab_size=50)
    with pytest.raises(ConfigError, match="reads both sides"):
        PermutationLMPretraining(BertEncoder(config), MLMHead(config), MASK, (PAD,))
