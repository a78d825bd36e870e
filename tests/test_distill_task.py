"""Task-specific distillation (distill/task.py): the prediction-layer loss against a hand computation for every
kind of logits (temperature on both sides), the teacher frozen and unchanged, a student's CRF starting as the
teacher's, whole runs of both methods on a tiny CSV task (the soft loss falls, the student folder is a normal
fine-tuned one, the same seed gives the same bits), and the mistakes as one line each."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from helpers import check_mistake, model_folders, one_thread, snapshot  # noqa: F401 - one_thread: autouse

from bertkit.cli import main
from bertkit.distill.task import TaskDistiller, soft_loss_sum
from bertkit.finetune.features import collate, encode_split
from bertkit.finetune.model import build_model, load_task_model

T = 2.0


def hand_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """KL(softmax(t / T) ‖ softmax(s / T)) · T² of one row, written out."""
    p_t, p_s = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    return (p_t * (p_t.log() - p_s.log())).sum() * T**2


def test_classification_soft_loss_is_a_sum_over_labelled_examples():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    batch = {"labels": torch.tensor([0, 2, -100, 1])}
    want = sum(hand_kl(s[i], t[i]) for i in (0, 1, 3))
    torch.testing.assert_close(soft_loss_sum("classification", s, t, batch, T), want)
    assert float(soft_loss_sum("classification", t, t, batch, T)) == pytest.approx(0, abs=1e-6)


def test_tagging_soft_loss_is_a_sum_over_labelled_tokens():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    labels = torch.tensor([[-100, 1, 2, -100, -100], [-100, 0, -100, 3, 1]])  # first pieces only, no padding
    want = sum(hand_kl(s[b, i], t[b, i]) for b, i in labels.ne(-100).nonzero().tolist())
    torch.testing.assert_close(soft_loss_sum("tagging", s, t, {"labels": labels}, T), want)


def test_qa_soft_loss_averages_start_and_end_over_real_positions():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 6, 2, generator=g), torch.randn(2, 6, 2, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    want = 0
    for b in range(2):
        n = int(mask[b].sum())
        want = want + (hand_kl(s[b, :n, 0], t[b, :n, 0]) + hand_kl(s[b, :n, 1], t[b, :n, 1])) / 2
    torch.testing.assert_close(soft_loss_sum("qa", s, t, {"attention_mask": mask}, T), want)


def test_multiple_choice_and_regression_soft_losses():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    choice_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    batch = {"labels": torch.tensor([1, 0]), "choice_mask": choice_mask}
    want = hand_kl(s[0], t[0]) + hand_kl(s[1, :2], t[1, :2])
    torch.testing.assert_close(soft_loss_sum("multiple_choice", s, t, batch, T), want)
    s, t = torch.randn(3, 1, generator=g), torch.randn(3, 1, generator=g)  # no temperature: the squared error
    torch.testing.assert_close(soft_loss_sum("regression", s, t, {}, T), ((s - t) ** 2).sum())


# ---- runs on a tiny CSV task ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """Tiny folders (helpers.model_folders), a neg/pos CSV task on their vocabulary, and a teacher fine-tuned on it."""
    root = tmp_path_factory.mktemp("distill-task")
    model_folders(root)
    rng = random.Random(0)
    words = [*"我们今天在北京开会", "the", "cat", "sat", "mat", "一般"]
    for split, n in (("train", 120), ("dev", 30), ("test", 40)):
        rows = ["text,label"]
        for _ in range(n):
            pos = rng.random() < 0.5
            w = [rng.choice(words) for _ in range(rng.randint(2, 6))]
            w.insert(rng.randint(0, len(w)), "很好" if pos else "差")
            rows.append(" ".join(w) + "," + ("pos" if pos else "neg"))
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n", "utf-8")
    flags = f"--task classification --train {root}/train.csv --dev {root}/dev.csv --test {root}/test.csv"
    flags += " --batch-size 16 --max-seq-length 32"
    assert main(f"finetune {flags} --model {root}/plain --out {root}/teacher --epochs 3 --lr 3e-3".split()) == 0
    return root, flags


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["eval"]["train_loss"] for r in rows if "eval" in r]


def test_a_distilbert_run_lowers_the_soft_loss_and_leaves_the_teacher_as_it_was(task):
    root, flags = task
    before = snapshot(root / "teacher")
    out = root / "distil"
    argv = f"distill {flags} --teacher {root}/teacher/model --out {out} --epochs 3 --lr 3e-3 --student-layers 1"
    assert main(argv.split()) == 0
    assert snapshot(root / "teacher") == before
    losses = _losses(out)
    assert losses[-1] < losses[0], losses
    student, _ = load_task_model(out / "model")  # a normal fine-tuned folder
    assert student.kind == "classification" and student.labels == ["neg", "pos"]
    assert student.encoder.config.num_hidden_layers == 1 and (out / "intermediate" / "config.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert "accuracy" in summary["test"]
    predictions = root / "predictions.jsonl"
    assert main(f"predict --model {out}/model --input {root}/test.csv --output {predictions}".split()) == 0


def test_the_same_seed_gives_the_same_bits(task):
    root, flags = task
    weights = []
    for name in ("same-a", "same-b"):
        argv = f"distill {flags} --teacher {root}/teacher/model --out {root}/{name} --epochs 1 --precision fp32"
        assert main([*argv.split(), "--alpha-hard", "0.5"]) == 0
        weights.append((root / name / "model" / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_a_tinybert_run_has_two_stages(task):
    root, flags = task
    out = root / "tiny"
    argv = f"distill {flags} --teacher {root}/teacher/model --out {out} --method tinybert --student {root}/plain"
    assert main([*argv.split(), "--intermediate-epochs", "2", "--epochs", "2", "--lr", "3e-3"]) == 0
    rows = [json.loads(line) for line in (out / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["hidden"] < rows[0]["hidden"], rows
    assert (out / "model" / "config.json").is_file() and "accuracy" in json.loads((out / "summary.json").read_text())[
        "test"
    ]


def test_the_teacher_gets_no_gradient_and_a_students_crf_starts_as_its(task):
    root, _ = task
    teacher, tok = build_model(root / "plain", "tagging", ["O", "B-LOC", "I-LOC"], crf=True)
    with torch.no_grad():
        teacher.crf.transitions.normal_()
    student, _ = build_model(root / "plain", "tagging", ["O", "B-LOC", "I-LOC"], crf=True)
    distiller = TaskDistiller(teacher, temperature=2.0, alpha_hard=1.0)
    distiller.start(student, torch.device("cpu"), use_bf16=False)
    assert torch.equal(student.crf.transitions, teacher.crf.transitions)
    assert not student.crf.transitions.data_ptr() == teacher.crf.transitions.data_ptr()
    from bertkit.finetune.readers import TagExample

    examples = [TagExample(["我们", "在", "北京"], ["O", "O", "B-LOC"]), TagExample(["北京"], ["B-LOC"])]
    batch = collate(encode_split(student, tok, examples, 16, None).features, tok.pad_token_id)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student.train()
    logits = student(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    distiller.loss_sum(student, logits, batch).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.encoder.parameters())
    assert not teacher.training
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_a_teacher_of_another_task_or_vocabulary_is_one_line(task, tmp_path, capsys):
    root, flags = task
    shutil.copytree(root, tmp_path / "r", ignore=shutil.ignore_patterns("distil", "tiny", "same-*"))
    r = tmp_path / "r"
    flags = flags.replace(str(root), str(r))
    check_mistake(f"distill {flags} --teacher {r}/ner --out {r}/d".split(), r, capsys, "is fine-tuned for tagging")
    (r / "train2.csv").write_text("text,label\n好,good\n差,bad\n", "utf-8")
    argv = f"distill --task classification --train {r}/train2.csv --teacher {r}/teacher/model --out {r}/d"
    check_mistake(argv.split(), r, capsys, "predicts labels neg, pos; --task classification has bad, good")
    argv = f"distill {flags} --teacher {r}/teacher/model --out {r}/d --method tinybert"
    check_mistake(argv.split(), r, capsys, "--method tinybert with --task distils a general-distilled student")
    argv = f"distill {flags} --teacher {r}/teacher/model --out {r}/d --steps 5"
    check_mistake(argv.split(), r, capsys, "--steps is for general distillation")
    argv = f"distill --teacher {r}/mlm --out {r}/d --student {r}/plain"
    check_mistake(argv.split(), r, capsys, "--student is for task-specific distillation")
