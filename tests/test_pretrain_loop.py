"""The pretraining loop: the loss falls, a resumed run continues exactly, the objective is sound."""

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from bertkit.config import BertConfig
from bertkit.model import BertEncoder, MLMHead, NSPHead
from bertkit.pretrain.dataset import PretrainingData, Vocab, split_documents
from bertkit.pretrain.loop import TrainConfig, pretrain
from bertkit.pretrain.objectives import BertPretraining
from bertkit.training import linear_schedule, param_groups

VOCAB = Vocab(size=100, pad_id=0, cls_id=2, sep_id=3, mask_id=4, special_ids=(0, 1, 2, 3, 4))


class Documents:
    """A learnable toy language: every sentence is one of 8 fixed 10-token phrases, cut at a random end.

    A masked token is then predictable from its neighbours (which phrase, which place), while a unigram
    guess gets about 1%: the loss has far to fall, and a small model gets there in a few hundred steps.
    """

    def __init__(self, n: int = 120, seed: int = 0):
        rng = np.random.default_rng(seed)
        phrases = rng.integers(5, 100, size=(8, 10))
        self.docs = [
            [phrases[rng.integers(8)][: rng.integers(5, 11)] for _ in range(rng.integers(2, 7))] for _ in range(n)
        ]

    def __len__(self):
        return len(self.docs)

    def document(self, i):
        return self.docs[i]


def make_run(tmp_path, steps=8, **cfg):
    torch.manual_seed(0)
    docs = Documents()
    train_ids, eval_ids = split_documents(len(docs), 0.1, seed=0)
    train = PretrainingData(docs, VOCAB, train_ids, max_seq_length=48)
    held_out = PretrainingData(docs, VOCAB, eval_ids, max_seq_length=48)
    config = BertConfig(
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=48,
    )
    model = BertPretraining(BertEncoder(config), MLMHead(config), NSPHead(config))
    settings = (
        dict(
            out_dir=str(tmp_path),
            steps=steps,
            batch_size=8,
            lr=2e-3,
            warmup=2,
            log_every=1,
            eval_every=1000,
            save_every=4,
            eval_batches=4,
            progress=False,
        )
        | cfg
    )
    return model, train, held_out, TrainConfig(**settings)


def losses(folder):
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["mlm_loss"] + r["nsp_loss"] for r in rows if "step" in r}


def test_resume_gives_the_same_next_losses(tmp_path):
    model, train, held_out, cfg = make_run(tmp_path / "full")
    pretrain(model, None, train, held_out, cfg)
    full = losses(tmp_path / "full")

    # A second run that stopped at step 4: it has only the step-4 checkpoint and the log up to there.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoints", resumed / "checkpoints")
    rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("\n".join(rows[:6]) + "\n")  # plus two rows to be dropped
    model, train, held_out, cfg = make_run(resumed)  # fresh weights: all state must come from the checkpoint
    pretrain(model, None, train, held_out, cfg, resume=True)
    again = losses(resumed)
    assert sorted(again) == list(range(1, 9))
    for step in range(5, 9):
        assert again[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_loss_falls_and_beats_the_unigram_baseline(tmp_path):
    model, train, held_out, cfg = make_run(
        tmp_path, steps=200, batch_size=16, warmup=10, eval_every=200, eval_batches=6
    )
    summary = pretrain(model, None, train, held_out, cfg)
    curve = losses(tmp_path)
    first, last = np.mean([curve[s] for s in range(1, 11)]), np.mean([curve[s] for s in range(191, 201)])
    assert last < first - 1.0, (first, last)
    ev = summary["eval"]
    assert ev["cloze_accuracy"] > max(0.05, 2 * ev["unigram_accuracy"]), ev
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_mlm_head_sees_only_masked_positions():
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    )
    model = BertPretraining(BertEncoder(config), MLMHead(config), NSPHead(config)).eval()
    ids = torch.randint(5, 100, (2, 10))
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 7] = 42, 17
    batch = {"input_ids": ids, "labels": labels, "next_sentence_label": torch.tensor([0, 1])}
    out = model(batch)
    logits = out.tensors["mlm_logits"]
    assert logits.shape == (2, 100) and out.losses["mlm"].count == 2 and out.losses["nsp"].count == 2
    assert model.units(batch) == {"mlm": 2, "nsp": 2}  # what the loop divides the step's sums by
    # The sum of per-token cross-entropies, which the loop divides by the step's masked-token count.
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([42, 17]), reduction="sum")
    torch.testing.assert_close(out.losses["mlm"].sum, expected)


def test_static_masking_repeats_every_dupe_factor_epochs_and_dynamic_does_not():
    docs = Documents(40)
    ids = np.arange(len(docs))
    static = PretrainingData(docs, VOCAB, ids, max_seq_length=32, dupe_factor=2)
    assert np.array_equal(static.epoch(0).input_ids, static.epoch(2).input_ids)
    assert not np.array_equal(static.epoch(0).input_ids, static.epoch(1).input_ids)
    dynamic = PretrainingData(docs, VOCAB, ids, max_seq_length=32, dynamic=True, dupe_factor=2)
    assert not np.array_equal(dynamic.epoch(0).input_ids, dynamic.epoch(2).input_ids)
    epoch = static.epoch(0)
    assert (epoch.lengths <= 32).all()
    assert ((epoch.labels != -100).sum(1) > 0).all()
    batch = epoch.batch(np.arange(4))
    assert batch["input_ids"].shape[1] == int(epoch.lengths[:4].max())


def test_split_documents_is_disjoint_and_seeded():
    train, held_out = split_documents(100, 0.1, seed=3)
    assert len(held_out) == 10 and not set(train) & set(held_out) and len(train) + len(held_out) == 100
    assert np.array_equal(split_documents(100, 0.1, seed=3)[1], held_out)


def test_optimizer_groups_and_schedule():
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    )
    groups = param_groups(BertEncoder(config), 0.01)
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and groups[1]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups[1]["params"])  # biases and LayerNorm: no decay
    assert linear_schedule(0, 10, 100) == pytest.approx(0.1)
    assert linear_schedule(9, 10, 100) == pytest.approx(1.0)
    assert linear_schedule(55, 10, 100) == pytest.approx(0.5)
    assert linear_schedule(100, 10, 100) == 0.0


def test_length_schedule_runs_each_phase_at_its_length_and_resumes_across_the_change(tmp_path):
    # 24 tokens for steps 1-4, then 48 tokens with half the sequences (same tokens per step) for 5-8
    phases = ((24, 0.5), (48, 0.5))
    model, train, held_out, cfg = make_run(tmp_path / "full", phases=phases, eval_every=4, copy_positions=True)
    summary = pretrain(model, None, train, held_out, cfg)
    assert summary["phases"] == [
        {"max_seq_length": 24, "batch_size": 8, "end_step": 4},
        {"max_seq_length": 48, "batch_size": 4, "end_step": 8},
    ]
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["max_seq_length"] for r in rows if "step" in r] == [24] * 4 + [48] * 4
    assert [r["eval"]["max_seq_length"] for r in rows if "eval" in r] == [24, 48]
    full = losses(tmp_path / "full")

    # the step-4 checkpoint was written at the end of phase 1: the resumed run starts phase 2 afresh
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoints", resumed / "checkpoints")
    model, train, held_out, cfg = make_run(resumed, phases=phases, eval_every=4, copy_positions=True)
    pretrain(model, None, train, held_out, cfg, resume=True)
    again = losses(resumed)
    for step in range(5, 9):
        assert again[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


@pytest.mark.parametrize(
    "phases, message",
    [
        (((32, 0.5), (128, 0.4)), "add up to 0.9, not 1"),
        (((4, 1.0),), "at least 8 tokens"),
        (((32, 0.0), (64, 1.0)), "fraction in"),
    ],
)
def test_bad_length_schedules_are_errors(tmp_path, phases, message):
    from bertkit.errors import BertkitError

    with pytest.raises(BertkitError, match=message):
        TrainConfig(out_dir=str(tmp_path), phases=phases)


def test_label_smoothing_mixes_the_target_with_the_uniform_one():
    config = BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    encoder, mlm = BertEncoder(config).eval(), MLMHead(config).eval()
    ids = torch.randint(5, 100, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    plain = BertPretraining(encoder, mlm)({"input_ids": ids, "labels": labels}).losses["mlm"].sum
    smoothed = BertPretraining(encoder, mlm, label_smoothing=0.1)({"input_ids": ids, "labels": labels}).losses["mlm"]
    smoothed = smoothed.sum
    hidden = encoder(ids).last_hidden_state[:, 3]  # (2, H)
    logp = torch.log_softmax(mlm(hidden, encoder.embeddings.word_embeddings.weight).float(), -1)  # (2, V)
    expected = -(0.9 * logp.gather(1, ids[:, 3:4]).squeeze(1) + 0.1 * logp.mean(-1)).sum()
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-5) and smoothed.item() != plain.item()


def test_each_phase_has_its_own_warm_up_and_decay():
    from bertkit.pretrain.loop import Phase, phase_schedule

    plan = [Phase(24, 8, 4), Phase(48, 4, 8)]
    factors = [phase_schedule(s, plan, warmup=2) for s in range(8)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.5])
    one = [Phase(48, 8, 10)]  # one phase: the schedule of a run without --phases
    assert [phase_schedule(s, one, 0.2) for s in range(10)] == [linear_schedule(s, 2, 10) for s in range(10)]


def test_copy_positions_tiles_the_trained_block_and_leaves_it_alone():
    from bertkit.pretrain.loop import copy_positions

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    encoder = BertEncoder(config)
    weight = encoder.embeddings.position_embeddings.weight
    before = weight.detach().clone()
    copy_positions(encoder, 32, 80)
    assert torch.equal(weight[:32], before[:32])
    assert torch.equal(weight[32:64], before[:32]) and torch.equal(weight[64:80], before[:16])
    assert torch.equal(weight[80:], before[80:])  # past the new length: untouched


def test_a_truncated_checkpoint_is_detected_and_the_previous_one_used(tmp_path, capsys):
    model, train, held_out, cfg = make_run(tmp_path / "full", steps=12)
    pretrain(model, None, train, held_out, cfg)
    full = losses(tmp_path / "full")
    kept = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000008"]  # saved at 4 and 8 (not at the end), the newest 2 kept

    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed)
    state = resumed / "checkpoints" / "step-00000008" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a copy cut short
    model, train, held_out, cfg = make_run(resumed, steps=12)
    capsys.readouterr()
    pretrain(model, None, train, held_out, cfg, resume=True)
    err = capsys.readouterr().err
    assert "step-00000008 is damaged: trainer_state.pt does not match its checksum" in err
    assert "resuming from" in err and "step-00000004 instead" in err
    again = losses(resumed)
    for step in range(5, 13):
        assert again[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_non_finite_losses_skip_the_update_and_stop_the_run_keeping_the_checkpoint(tmp_path, capsys):
    from bertkit.errors import BertkitError

    model, train, held_out, cfg = make_run(tmp_path, steps=40, save_every=2, max_bad_steps=3)
    calls = {"n": 0}
    real = model.forward

    def poisoned(*args, **kwargs):  # from the 5th step on, every loss is NaN
        calls["n"] += 1
        res = real(*args, **kwargs)
        if calls["n"] > 4:
            res.losses["mlm"] = res.losses["mlm"]._replace(sum=res.losses["mlm"].sum * float("nan"))
        return res

    model.forward = poisoned
    with pytest.raises(BertkitError, match="not finite for 3 steps in a row .*step-00000004"):
        pretrain(model, None, train, held_out, cfg)
    captured = capsys.readouterr()
    assert "step 5: loss nan; the update is skipped (1 in a row)" in captured.out + captured.err
    assert all(torch.isfinite(p).all() for p in model.parameters())  # skipped updates left the weights sound
    assert not (tmp_path / "model").exists()  # no final model from a failed run; the checkpoint stays
    assert (tmp_path / "checkpoints" / "step-00000004").is_dir()


def test_electra_resumes_exactly_and_saves_discriminator_and_generator(tmp_path):
    from dataclasses import replace as dc_replace

    from bertkit.model import RTDHead
    from bertkit.pretrain.masking import MaskingConfig
    from bertkit.pretrain.objectives import ElectraPretraining, electra_generator_config

    def electra_run(folder):
        _, train, held_out, cfg = make_run(folder)
        torch.manual_seed(0)
        masking = MaskingConfig(mask_token_prob=0.85, random_token_prob=0.0)
        train = dc_replace(train, objective="full", masking=masking)
        held_out = dc_replace(held_out, objective="full", masking=masking)
        disc = BertConfig(
            vocab_size=100,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=96,
            max_position_embeddings=48,
            model_type="electra",
            embedding_size=32,
        )
        gen = electra_generator_config(disc, 0.34)
        model = ElectraPretraining(BertEncoder(gen), MLMHead(gen), BertEncoder(disc), RTDHead(disc))
        return model, train, held_out, cfg

    def rtd_losses(folder):
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: (r["mlm_loss"], r["rtd_loss"]) for r in rows if "step" in r}

    model, train, held_out, cfg = electra_run(tmp_path / "full")
    summary = pretrain(model, None, train, held_out, cfg)
    assert (tmp_path / "full" / "model" / "model.safetensors").is_file()
    assert summary["generator"] == str(tmp_path / "full" / "generator")
    full = rtd_losses(tmp_path / "full")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoints", resumed / "checkpoints")
    model, train, held_out, cfg = electra_run(resumed)
    pretrain(model, None, train, held_out, cfg, resume=True)
    again = rtd_losses(resumed)
    for step in range(5, 9):
        assert again[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_a_streamed_epoch_is_reproducible_resumable_and_one_chunk_is_the_whole_epoch():
    from dataclasses import replace as dc_replace

    docs = Documents(n=200)
    whole = PretrainingData(docs, VOCAB, np.arange(200), max_seq_length=32, chunk_tokens=0)
    one = dc_replace(whole, chunk_tokens=10**9)
    a, b = whole.epoch(1), one.epoch(1)
    for f in ("input_ids", "labels", "token_type_ids", "lengths", "next_sentence_label"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f  # one chunk: the epoch as it always was
    small = dc_replace(whole, chunk_tokens=500)
    chunks = list(small.chunks(1))
    assert len(chunks) > 5 and max(len(c) for c in chunks) < len(a) / 4  # memory holds one chunk
    assert sum(len(c) for c in chunks) == len(small.epoch(1))
    # Reproducible, and resuming at batch k gives exactly the batches a full pass gives from k on.
    full = [(e, i, bt["input_ids"]) for e, i, bt in itertools.islice(small.batches(8, epoch=1), 60)]
    again = [(e, i, bt["input_ids"]) for e, i, bt in itertools.islice(small.batches(8, epoch=1, start=23), 37)]
    assert [(e, i) for e, i, _ in again] == [(e, i) for e, i, _ in full[23:]]
    for (_, _, x), (_, _, y) in zip(again, full[23:], strict=True):
        assert torch.equal(x, y)
    # Every instance of the epoch is served once, across chunk boundaries, but for the ragged last batch.
    n = len(small.epoch(1))
    epoch_one = [bt for e, _, bt in itertools.takewhile(lambda t: t[0] == 1, small.batches(8, epoch=1))]
    assert len(epoch_one) == n // 8


def test_resume_drops_a_torn_last_log_line_and_rows_after_the_checkpoint(tmp_path, capsys):
    from bertkit.pretrain.runs import truncate_log as _truncate_log

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 10, "mlm_loss": 5.0}\n{"eval": {"step": 10}}\n{"step": 20, "mlm_loss": 4.0}\n{"step": 3')
    _truncate_log(log, 10)  # killed while writing a row after the step-10 checkpoint
    assert log.read_text() == '{"step": 10, "mlm_loss": 5.0}\n{"eval": {"step": 10}}\n'
    assert "dropped a torn line" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_chunked_vocabulary_loss_is_cross_entropy_with_its_gradient_and_top1_count(monkeypatch, dtype, eps):
    from bertkit.pretrain import objectives

    monkeypatch.setitem(objectives.CE_CHUNK_ELEMENTS, "cpu", 3 * 1000)  # chunks of 3 rows: 17 = 5 × 3 + 2
    torch.manual_seed(0)
    logits = (torch.randn(17, 1000) * 4).to(dtype)
    targets = torch.randint(0, 1000, (17,))
    targets[:6] = logits[:6].float().argmax(-1)  # six rows predicted right, the rest (almost surely) not
    weight = torch.randn(())  # the loop scales the sum: the gradient must carry the incoming factor

    ours = logits.clone().requires_grad_()
    loss, correct = objectives.vocab_cross_entropy(ours, targets, eps)
    (loss * weight).backward()
    ref = logits.clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(ref.float(), targets, reduction="sum", label_smoothing=eps)
    (expected * weight).backward()

    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert correct == int((logits.float().argmax(-1) == targets).sum()) == 6
    assert ours.grad.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 8e-3  # bf16: both round the same fp32 gradient once
    torch.testing.assert_close(ours.grad.float(), ref.grad.float(), rtol=0, atol=tol)
    assert torch.equal(logits, ours.detach())  # the backward recomputes from the logits without touching them


def test_the_vocabulary_loss_of_no_masked_tokens_is_zero_with_an_empty_gradient():
    from bertkit.pretrain.objectives import vocab_cross_entropy

    logits = torch.zeros(0, 50, requires_grad=True)
    loss, correct = vocab_cross_entropy(logits, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0 and correct == 0 and logits.grad.shape == (0, 50)


def test_a_run_that_ends_with_non_finite_weights_fails_and_saves_no_model(tmp_path, capsys):
    from bertkit.errors import BertkitError

    model, train, held_out, cfg = make_run(tmp_path / "run", steps=2, save_every=100)
    with torch.no_grad():  # an unused row of the word embeddings: the loss stays finite, the weights do not
        model.encoder.embeddings.word_embeddings.weight[99] = float("inf")
    with pytest.raises(BertkitError, match="the weights are not finite after step 2 .*word_embeddings.weight"):
        pretrain(model, None, train, held_out, cfg)
    assert not (tmp_path / "run" / "model").exists()


def test_resume_never_restarts_a_finished_run_or_goes_backwards(tmp_path):
    from bertkit.errors import BertkitError
    from bertkit.pretrain.runs import check_resume

    model, train, held_out, cfg = make_run(tmp_path / "run", steps=6)
    pretrain(model, None, train, held_out, cfg)  # checkpoint at step 4; finished at 6
    check_resume(tmp_path / "run", 6, {})  # the same --steps redoes steps 5-6 bit for bit
    check_resume(tmp_path / "run", 9, {})  # more steps continue it
    with pytest.raises(BertkitError, match="has finished 6 steps"):
        check_resume(tmp_path / "run", 5, {})
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    with pytest.raises(BertkitError, match="no checkpoint was written"):
        check_resume(tmp_path / "run", 9, {})
    check_resume(tmp_path / "new", 9, {})  # an empty folder: a new run, even with --resume


class SpreadObjective(BertPretraining):
    """A toy objective defined only here: BERT's, plus a loss that pulls the [CLS] vectors' squared norm towards 1.5
    (per sequence, weight 5) and a metric (how many sequences are within 0.5 of it). The loop must train it,
    log and plot both, with no change inside it."""

    def units(self, batch):
        return super().units(batch) | {"spread": len(batch["input_ids"])}

    def forward(self, batch):
        from bertkit.pretrain.objectives import Loss, Ratio

        res = super().forward(batch)
        cls = self.encoder(batch["input_ids"], batch.get("attention_mask")).last_hidden_state[:, 0].float()
        gap = (cls.pow(2).mean(-1) - 1.5).pow(2)  # (B,): LayerNorm starts it near 1
        res.losses["spread"] = Loss(gap.sum(), len(gap), 5.0)
        res.metrics["spread_close"] = Ratio(int((gap < 0.25).sum()), len(gap))
        return res


def test_an_objective_defined_outside_the_loop_trains_logs_and_plots_its_own_loss_and_metric(tmp_path):
    from bertkit.pretrain.objectives import Objective
    from bertkit.pretrain.plots import plot_metrics

    model, train, held_out, cfg = make_run(tmp_path, steps=30, eval_every=15, grad_accum=2, lr=1e-2)
    model = SpreadObjective(model.encoder, model.mlm, model.nsp)
    assert isinstance(model, Objective)  # the documented protocol
    pretrain(model, None, train, held_out, cfg)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "step" in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    assert all({"spread_loss", "spread_close", "mlm_loss", "nsp_loss"} <= r.keys() for r in train_rows)
    assert [e["step"] for e in evals] == [15, 30] and all("spread_loss" in e and "spread_close" in e for e in evals)
    first, last = (
        np.mean([r["spread_loss"] for r in train_rows[:5]]),
        np.mean([r["spread_loss"] for r in train_rows[-5:]]),
    )
    assert last < first / 2, (first, last)  # its gradient reaches the encoder: the loss falls
    labels = plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "again.png")
    assert {"train spread", "train spread_close", "held-out spread", "held-out spread_close"} <= set(labels)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_the_step_loss_weighs_every_unit_of_the_step_equally_whatever_the_micro_batches():
    from bertkit.pretrain.objectives import Loss, ObjectiveOutput

    a = ObjectiveOutput({"mlm": Loss(torch.tensor(6.0), 3), "rtd": Loss(torch.tensor(2.0), 10, 50.0)})
    b = ObjectiveOutput({"mlm": Loss(torch.tensor(2.0), 1), "rtd": Loss(torch.tensor(1.0), 10, 50.0)})
    units = {"mlm": 4, "rtd": 20}  # the step's totals
    total = a.total(units) + b.total(units)
    assert total.item() == pytest.approx((6 + 2) / 4 + 50 * (2 + 1) / 20)
