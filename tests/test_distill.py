"""Distillation's parts: layer maps as documented, a DistilBERT student that starts as the teacher's chosen layers
(and its embeddings exactly), every loss term against a hand computation (temperature on both sides), the teacher
frozen and out of the checkpoint, and TinyBERT's attention loss blind to padding."""

import pytest
import torch
import torch.nn.functional as F
from helpers import one_thread  # noqa: F401 - module-wide single thread

from bertkit.config import BertConfig
from bertkit.distill.objectives import DistilBertDistillation, TinyBertDistillation
from bertkit.distill.students import (
    distilbert_layers,
    distilbert_student,
    parse_layer_map,
    tinybert_student,
    uniform_layer_map,
)
from bertkit.errors import BertkitError
from bertkit.model import BertEncoder, MLMHead


def test_layer_maps_are_as_documented():
    assert distilbert_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # Hugging Face's extract_distilbert.py
    assert distilbert_layers(4, 2) == [0, 3]
    assert uniform_layer_map(12, 4) == [3, 6, 9, 12]  # TinyBERT's g(m) = 3m
    assert uniform_layer_map(4, 2) == [2, 4]
    assert parse_layer_map("2,4,6", 6, 3) == [2, 4, 6]
    for text, message in (("2,2,6", "increasing"), ("1,2", "2 layers given"), ("a,b,c", "joined by commas")):
        with pytest.raises(BertkitError, match=message):
            parse_layer_map(text, 6, 3)
    with pytest.raises(BertkitError, match="no deeper than its teacher"):
        uniform_layer_map(4, 6)


def _teacher(layers=4, seed=0, **kw):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw,
    )  # fmt: skip
    return BertEncoder(config).eval(), MLMHead(config).eval()


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 1:4] = ids[:, 1:4]
    ids = ids.clone()
    ids[:, 1:3] = 3  # [MASK]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def test_a_distilbert_student_starts_as_the_teachers_chosen_layers():
    teacher, mlm = _teacher(layers=4)
    student, student_mlm, chosen = distilbert_student(teacher, mlm, 2)
    assert chosen == [0, 3] and student.config.model_type == "distilbert"
    assert student.pooler is None and student.embeddings.token_type_embeddings is None
    for i, j in enumerate(chosen):
        for (name, a), b in zip(
            student.layers[i].state_dict().items(), teacher.layers[j].state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
    assert all(
        torch.equal(a, b) for a, b in zip(student_mlm.state_dict().values(), mlm.state_dict().values(), strict=True)
    )
    batch = _batch()
    with torch.no_grad():  # the token-type row folded into the positions: the same embeddings on one segment
        ours = student.embeddings(batch["input_ids"])
        theirs = teacher.embeddings(batch["input_ids"], batch["token_type_ids"])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_distilbert_loss_terms_equal_a_hand_computation():
    teacher, mlm = _teacher()
    student, student_mlm, _ = distilbert_student(teacher, mlm, 2)
    torch.nn.init.normal_(student.layers[1].ffn.down.weight, std=0.3)  # a student that differs from its teacher
    T = 3.0
    model = DistilBertDistillation(teacher, mlm, student, student_mlm, 5.0, 2.0, 1.0, T)
    batch = _batch()
    res = model(batch)
    masked = batch["labels"] != -100
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        t = teacher(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        s = student(batch["input_ids"], batch["attention_mask"]).last_hidden_state
        t_logits = mlm(t[masked], teacher.embeddings.word_embeddings.weight)
        s_logits = student_mlm(s[masked], student.embeddings.word_embeddings.weight)
    p_t = (t_logits / T).softmax(-1)  # temperature on both sides
    kl = (p_t * ((t_logits / T).log_softmax(-1) - (s_logits / T).log_softmax(-1))).sum() * T * T
    nll = F.cross_entropy(s_logits, batch["labels"][masked], reduction="sum")
    cos = (1 - F.cosine_similarity(s[real], t[real], dim=-1)).sum()
    n = int(masked.sum())
    torch.testing.assert_close(res.losses["ce"].sum, kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.losses["mlm"].sum, nll, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.losses["cos"].sum, cos, rtol=1e-5, atol=1e-6)
    assert (res.losses["ce"].weight, res.losses["mlm"].weight, res.losses["cos"].weight) == (5.0, 2.0, 1.0)
    step = res.total(model.units(batch))
    torch.testing.assert_close(step, 5 * kl / n + 2 * nll / n + cos / int(real.sum()), rtol=1e-5, atol=1e-6)


def test_tinybert_loss_terms_equal_a_hand_computation():
    teacher, _ = _teacher(layers=4)
    student = tinybert_student(teacher.config, 2, 16)
    model = TinyBertDistillation(teacher, student, [2, 4])
    batch = _batch()
    res = model(batch)
    with torch.no_grad():
        t = teacher(batch["input_ids"], batch["attention_mask"], output_hidden_states=True, output_scores=True)
        s = student(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            output_hidden_states=True,
            output_scores=True,
        )
        W = model.project
        embedding = hidden = attention = 0.0
        for b, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            embedding += ((W(s.hidden_states[0][b, :n]) - t.hidden_states[0][b, :n]) ** 2).mean(-1).sum()
            for m, g in ((1, 2), (2, 4)):
                hidden += ((W(s.hidden_states[m][b, :n]) - t.hidden_states[g][b, :n]) ** 2).mean(-1).sum()
                diff = s.scores[m - 1][b, :, :n, :n] - t.scores[g - 1][b, :, :n, :n]  # (heads, n, n) real pairs
                attention += (diff**2).sum() / diff.shape[0]
    torch.testing.assert_close(res.losses["embedding"].sum, embedding, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.losses["hidden"].sum, hidden, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.losses["attention"].sum, attention, rtol=1e-5, atol=1e-6)
    assert res.losses["attention"].count == 10**2 + 7**2 + 4**2  # real (query, key) pairs


def test_tinybert_attention_loss_ignores_padding():
    teacher, _ = _teacher(layers=4)
    model = TinyBertDistillation(teacher, tinybert_student(teacher.config, 2, 16), [2, 4])
    batch = _batch()
    other = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 7))
    with torch.no_grad():
        a, b = model(batch).losses, model(other).losses
    for name in ("embedding", "hidden", "attention"):
        torch.testing.assert_close(a[name].sum, b[name].sum, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["distilbert", "tinybert"])
def test_the_teacher_gets_no_gradient_stays_unchanged_and_is_not_checkpointed(method):
    teacher, mlm = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    if method == "distilbert":
        model = DistilBertDistillation(teacher, mlm, *distilbert_student(teacher, mlm, 2)[:2])
    else:
        model = TinyBertDistillation(teacher, tinybert_student(teacher.config, 2, 16), [2, 4])
    model.train()
    assert not teacher.training  # eval whatever the loop asks of the student
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(not p.requires_grad for p in teacher.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(5):
        batch = _batch()
        loss = model(batch).total(model.units(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    state = model.state_dict()
    assert state and not any(k.startswith("teacher.") for k in state)
    model.load_state_dict(state)  # the student's state alone loads back


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    from helpers import model_folders

    root = tmp_path_factory.mktemp("distill")
    model_folders(root)  # root/mlm: a 2-layer, 32-wide BERT with its MLM head
    docs = ["我们今天在北京开会。大家都很好！", "他们明天去上海。天气不错。", "新年快乐，朋友们。世界经济发展。"]
    (root / "docs.txt").write_text("\n\n".join(d.replace("。", "。\n") for d in docs * 8), "utf-8")
    return root


DISTILL = (
    "distill --teacher {r}/mlm --corpus {r}/docs.txt --cache-dir {r}/cache --batch-size 4 --max-seq-length 32 "
    "--steps 6 --save-every 3 --log-every 1 --eval-every 100 --precision fp32 --keep-checkpoints 5 --out {out}"
)


@pytest.mark.parametrize("method", ["distilbert", "tinybert --student-hidden 16"])
def test_a_distillation_resumed_gives_the_same_student_bit_for_bit(teacher_folder, tmp_path, method):
    import shutil

    from bertkit.cli import main

    argv = DISTILL.format(r=teacher_folder, out="{out}") + f" --method {method}"
    assert main(argv.format(out=tmp_path / "full").split()) == 0
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step3 = tmp_path / "full" / "checkpoints" / "step-00000003"
    shutil.copytree(step3, resumed / "checkpoints" / step3.name)
    assert main((argv.format(out=resumed) + " --resume").split()) == 0
    full = (tmp_path / "full" / "model" / "model.safetensors").read_bytes()
    assert full == (resumed / "model" / "model.safetensors").read_bytes()
    config = (tmp_path / "full" / "model" / "config.json").read_text()
    assert ('"distilbert"' in config) == method.startswith("distilbert")
