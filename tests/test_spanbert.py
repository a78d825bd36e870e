"""SpanBERT's span boundary objective: the boundary fields, the head's inputs and gradient, a run through the loop,
the head saved beside the transformers weights and read back by --init, and the recipe's refusals."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from helpers import one_thread  # noqa: F401 - module-wide single thread
from test_cli import assert_user_error, run
from test_pretrain_loop import Documents

from bertkit.config import BertConfig
from bertkit.model import BertEncoder, MLMHead
from bertkit.pretrain import dataset
from bertkit.pretrain.dataset import PretrainingData, Vocab, WordMasking, split_documents
from bertkit.pretrain.loop import TrainConfig, pretrain
from bertkit.pretrain.masking import IGNORE_INDEX, MaskingConfig
from bertkit.pretrain.spanbert import SBO_FILE, SpanBertPretraining, SpanBoundaryHead

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB = Vocab(100, 0, 2, 3, 4, (0, 1, 2, 3, 4), SPECIALS + tuple(f"t{i}" for i in range(5, 100)))
ONE_WORD_A_TOKEN = SimpleNamespace(cut=lambda text: text.split())


def _config(**kw):
    return BertConfig(
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=48,
        **kw,
    )


def _data(unit="span_boundaries", seed=0):
    docs = Documents()
    train_ids, eval_ids = split_documents(len(docs), 0.1, seed=0)
    common = dict(
        documents=docs,
        vocab=VOCAB,
        max_seq_length=48,
        objective="full",
        masking=MaskingConfig(exact_count=False),
        unit=unit,
        segmenter=ONE_WORD_A_TOKEN,
        seed=seed,
    )
    return PretrainingData(doc_ids=train_ids, dynamic=True, **common), PretrainingData(doc_ids=eval_ids, **common)


def test_boundary_fields_on_a_hand_built_row(monkeypatch):
    # [CLS] a b c d e f [SEP]; spans [2, 4) and [5, 6): tokens 2..3 between 1 and 4, token 5 between 4 and 6
    monkeypatch.setattr(dataset, "choose_spans", lambda *a, **k: np.array([[2, 4], [5, 6]]))
    tokens = np.array([[2, 10, 11, 12, 13, 14, 15, 3, 0]], dtype=np.int32)
    words = [np.array([-1, 0, 1, 2, 3, 4, 5, -1])]
    out = WordMasking("geometric", boundaries=True)(
        tokens, np.array([8]), words, MaskingConfig(), VOCAB, np.random.default_rng(0)
    )
    f = out.token_fields
    assert f["sbo_left"].tolist() == [[-1, -1, 1, 1, -1, 4, -1, -1, -1]]
    assert f["sbo_right"].tolist() == [[-1, -1, 4, 4, -1, 6, -1, -1, -1]]
    assert f["sbo_pos"].tolist() == [[0, 0, 1, 2, 0, 1, 0, 0, 0]]
    assert ((out.labels != IGNORE_INDEX) == (f["sbo_pos"] > 0)).all()  # the SBO targets are the span tokens
    plain = WordMasking("geometric")(tokens, np.array([8]), words, MaskingConfig(), VOCAB, np.random.default_rng(0))
    assert plain.token_fields == {} and (plain.input_ids == out.input_ids).all()  # the masks do not change


def test_boundaries_on_an_epoch_leave_the_masks_alone_and_frame_every_span():
    with_fields, plain = _data()[0].epoch(0), _data("span")[0].epoch(0)
    assert (with_fields.input_ids == plain.input_ids).all() and (with_fields.labels == plain.labels).all()
    assert plain.token_fields == {}
    f = with_fields.token_fields
    span = f["sbo_pos"] > 0
    assert ((with_fields.labels != IGNORE_INDEX) == span).all() and span.any()
    for row, col in zip(*np.nonzero(span), strict=True):
        left, right, place = f["sbo_left"][row, col], f["sbo_right"][row, col], f["sbo_pos"][row, col]
        assert 0 <= left < col < right < with_fields.lengths[row] and col - left == place
        assert (f["sbo_left"][row, left + 1 : right] == left).all()  # one span: all its tokens share both ends


def _objective(seed=0):
    torch.manual_seed(seed)
    config = _config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return SpanBertPretraining(BertEncoder(config, add_pooler=False), MLMHead(config), SpanBoundaryHead(config, 10))


def test_the_sbo_gradient_reaches_the_encoder_only_through_the_boundaries():
    model = _objective()
    batch = next(_data()[0].batches(4))[2]
    kept = {}

    def keep(module, args, out):
        out.last_hidden_state.retain_grad()
        kept["hidden"] = out.last_hidden_state

    model.encoder.register_forward_hook(keep)
    res = model(batch)
    assert model.units(batch) == {"mlm": res.losses["mlm"].count, "sbo": res.losses["sbo"].count}
    assert res.losses["sbo"].count == int((batch["labels"] != IGNORE_INDEX).sum()) > 0
    res.losses["sbo"].sum.backward()
    touched = kept["hidden"].grad.abs().sum(-1) > 0  # (B, T)
    boundary = torch.zeros_like(touched)
    span = batch["sbo_pos"] > 0
    rows = torch.arange(len(span))[:, None].expand_as(span)[span]
    boundary[rows, batch["sbo_left"][span].long()] = True
    boundary[rows, batch["sbo_right"][span].long()] = True
    assert (touched == boundary).all()  # nothing from the span's own tokens, nothing from the others
    assert model.sbo.position_embeddings.weight.grad.abs().sum() > 0


def _run(out, steps=40):
    model = _objective()
    train, held_out = _data()
    cfg = TrainConfig(
        out_dir=str(out), steps=steps, batch_size=8, lr=2e-3, warmup=2, log_every=1, eval_every=steps,
        save_every=steps, eval_batches=2, progress=False,
    )  # fmt: skip
    pretrain(model, None, train, held_out, cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return model, [r for r in rows if "step" in r], [r["eval"] for r in rows if "eval" in r]


def test_a_run_lowers_both_losses_saves_the_head_beside_the_weights_and_repeats_bit_for_bit(tmp_path):
    model, train, evals = _run(tmp_path / "a")
    for name in ("mlm_loss", "sbo_loss"):
        first, last = np.mean([r[name] for r in train[:5]]), np.mean([r[name] for r in train[-5:]])
        assert last < first - 0.5, (name, first, last)
    assert "sbo_accuracy" in evals[-1] and "mlm_accuracy" in evals[-1]
    folder = tmp_path / "a" / "model"
    assert (folder / SBO_FILE).exists()
    again = SpanBoundaryHead(model.encoder.config, 10)
    again.load(folder)
    for k, v in model.sbo.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    hf, info = transformers.BertForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # sbo.safetensors sits beside model.safetensors, unread by transformers
    ids = torch.tensor([[2, 10, 11, 12, 4, 13, 3]])
    model.encoder.eval()
    with torch.no_grad():
        ours = model.encoder(ids).last_hidden_state
        theirs = transformers.BertModel.from_pretrained(folder)(ids).last_hidden_state
    assert (ours - theirs).abs().max() <= 1e-5
    assert hf.config.architectures == ["BertForMaskedLM"]
    _, train_b, _ = _run(tmp_path / "b")
    assert [(r["mlm_loss"], r["sbo_loss"]) for r in train] == [(r["mlm_loss"], r["sbo_loss"]) for r in train_b]


def test_the_recipe_saves_the_head_continues_with_it_and_refuses_nsp(tmp_path):
    from bertkit.pretrain.setup import RECIPES, build_pretraining

    out, cache = tmp_path / "run", str(tmp_path / "cache")
    flags = "--recipe spanbert --num-hidden-layers 1 --hidden-size 64 --steps 3 --batch-size 8 --max-seq-length 32"
    result = run("pretrain", "--out", str(out), *flags.split(), "--vocab-size", "800", "--cache-dir", cache)
    assert result.returncode == 0, result.stderr
    assert "recipe spanbert: bert" in result.stdout
    assert (out / "model" / SBO_FILE).exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert "sbo_loss" in rows[0] and "nsp_loss" not in rows[0]
    saved = SpanBoundaryHead(BertConfig.from_json(out / "model" / "config.json"), RECIPES["spanbert"].max_span)
    saved.load(out / "model")
    model, *_ = build_pretraining(["peoples-daily"], "spanbert", init=str(out / "model"), cache_dir=cache)
    assert isinstance(model, SpanBertPretraining)
    for k, v in saved.state_dict().items():
        assert torch.equal(model.sbo.state_dict()[k], v), k  # --init continues with the saved head
    again = run("pretrain", "--out", str(tmp_path / "more"), "--init", str(out / "model"), "--recipe", "spanbert",
                "--steps", "2", "--batch-size", "8", "--max-seq-length", "32", "--cache-dir", cache)  # fmt: skip
    assert again.returncode == 0, again.stderr
    base = ["pretrain", "--out", str(tmp_path / "x"), "--steps", "1", "--cache-dir", cache]
    assert_user_error(run(*base, "--recipe", "spanbert", "--objective", "nsp"), "--objective nsp")
    assert_user_error(run(*base, "--recipe", "spanbert", "--masking", "token"), "--masking token")


@pytest.mark.parametrize("bad", [{"span": None}, {"span": "ngram"}])
def test_boundaries_are_only_for_geometric_spans(bad):
    with pytest.raises(ValueError, match="geometric"):
        WordMasking(boundaries=True, **bad)(
            np.array([[2, 10, 3]]),
            np.array([3]),
            [np.array([-1, 0, -1])],
            MaskingConfig(),
            VOCAB,
            np.random.default_rng(),
        )
