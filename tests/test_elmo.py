"""ELMo: neither direction sees the token it predicts (by gradient), padding changes nothing, the biLM's loss falls
and a run resumes exactly; fine-tuning learns a softmax-normalised scalar mix."""

import json
import math
import shutil

import pytest
import torch
from helpers import one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.cli import main
from bertkit.lineage.elmo import BOS, EOS, BiLM, CharVocab, ElmoConfig, ScalarMix, batch, load_bilm
from bertkit.lineage.elmo_run import ElmoTask

CONFIG = ElmoConfig(vocab_size=30, embedding_size=8, hidden_size=12, num_layers=2, dropout=0.0)


def test_neither_direction_sees_the_token_it_predicts():
    torch.manual_seed(0)
    model = BiLM(CONFIG).eval()
    ids = torch.tensor([[BOS, 5, 6, 7, 8, 9, EOS]])
    lengths = torch.tensor([7])
    H = CONFIG.hidden_size
    for k in range(1, 6):
        x = model.token_representation(ids).detach().requires_grad_(True)
        top = model.layers(ids, lengths, x=x)[-1]
        # the forward state at k predicts token k+1: it may depend on x_0..x_k only
        grad = torch.autograd.grad(top[0, k, :H].sum(), x, retain_graph=True)[0][0].abs().sum(-1)
        assert torch.all(grad[k + 1 :] == 0) and torch.all(grad[: k + 1] > 0), (k, grad)
        # the backward state at k predicts token k-1: it may depend on x_k..x_N only
        grad = torch.autograd.grad(top[0, k, H:].sum(), x)[0][0].abs().sum(-1)
        assert torch.all(grad[:k] == 0) and torch.all(grad[k:] > 0), (k, grad)


def test_padding_changes_no_real_position():
    torch.manual_seed(0)
    model = BiLM(CONFIG).eval()
    vocab = CharVocab(list("今天气很好我们"))
    alone_ids, alone_len = batch(vocab, ["今天很好"], 62)
    padded_ids, padded_len = batch(vocab, ["今天很好", "我们今天天气很好"], 62)
    with torch.no_grad():
        alone = model.layers(alone_ids, alone_len)
        padded = model.layers(padded_ids, padded_len)
        loss_alone = model.loss(alone_ids, alone_len)[1]
    n = int(alone_len[0])
    for a, b in zip(alone, padded, strict=True):
        torch.testing.assert_close(a[0, :n], b[0, :n], atol=1e-6, rtol=0)
    assert len(alone) == CONFIG.num_layers + 1 and alone[0].shape[-1] == 2 * CONFIG.hidden_size
    assert loss_alone["forward_loss"] > 0


def test_the_scalar_mix_is_softmax_normalised_and_learns():
    mix = ScalarMix(3)
    layers = [torch.eye(3)[j].expand(1, 2, 3) for j in range(3)]  # layer j holds the unit vector e_j
    torch.testing.assert_close(mix(layers), torch.full((1, 2, 3), 1 / 3))  # equal weights at the start
    optimizer = torch.optim.SGD(mix.parameters(), lr=0.5)
    for _ in range(100):  # ask for e_2: only weight on layer 2 gives it, whatever γ is
        loss = (mix(layers) - torch.eye(3)[2]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w = mix.weights().detach()
    assert abs(float(w.sum()) - 1) < 1e-6 and bool((w > 0).all())
    assert float(w[2]) > 0.8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("elmo")
    lines = ["我们今天去公园散步。", "今天天气很好。", "我们明天去北京开会。", "北京的天气很好。"] * 60
    (root / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


ARGS = ["--hidden-size", "16", "--embedding-size", "8", "--batch-size", "8", "--warmup", "5", "--lr", "2e-2"]


def test_the_bilm_learns_and_resumes_exactly(corpus, tmp_path):
    def run(out, *extra):
        argv = ["elmo", "train", "--out", str(out), "--corpus", str(corpus / "corpus.txt"), *ARGS]
        return main([*argv, "--steps", "60", "--eval-every", "20", "--save-every", "20", *extra])

    assert run(tmp_path / "a") == 0
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval"]["loss"] for r in rows if "eval" in r]
    vocab = len(load_bilm(tmp_path / "a" / "model")[1])
    assert evals[-1] < evals[0] and evals[-1] < math.log(vocab) / 2  # falls, to half the uniform guess's
    assert (tmp_path / "a" / "curves.png").is_file()
    assert run(tmp_path / "b") == 0
    b = tmp_path / "b"
    shutil.rmtree(b / "model")  # as if killed after step 40's checkpoint: no model, no summary, no step 60
    (b / "summary.json").unlink()
    shutil.rmtree(b / "checkpoints" / "step-00000060")
    assert run(b, "--resume") == 0
    assert (b / "model" / "elmo.safetensors").read_bytes() == (
        tmp_path / "a" / "model" / "elmo.safetensors"
    ).read_bytes()
    model, vocab = load_bilm(b / "model")
    assert vocab.tokens[:4] == ["[PAD]", "[UNK]", "<S>", "</S>"] and "京" in vocab.index


@pytest.fixture(scope="module")
def bilm(corpus):
    """A biLM of 10 steps on the small corpus, shared by the fine-tuning tests."""
    out = corpus / "bilm"
    argv = ["elmo", "train", "--out", str(out), "--corpus", str(corpus / "corpus.txt"), *ARGS, "--steps", "10"]
    assert main(argv) == 0
    return out / "model"


def test_finetuning_learns_the_mix_on_a_built_in_task(bilm, tmp_path):
    out = tmp_path / "sentiment"
    argv = ["elmo", "finetune", "--model", str(bilm), "--task", "sentiment", "--out", str(out)]
    assert (
        main([*argv, "--epochs", "2", "--max-train-examples", "300", "--max-chars", "40", "--lr", "1e-3", "1e-2"]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["grid"]) == {"0.001", "0.01"} and summary["dev"] == max(summary["grid"].values())
    assert f"{summary['lr']:g}" in summary["grid"]  # the rate chosen on dev; test scored once, with it
    mix = summary["epochs"][-1]["mix"]
    assert len(mix) == 3 and abs(sum(mix) - 1) < 1e-6 and mix != [1 / 3] * 3  # normalised, and moved
    assert 0 <= summary["test"] <= 1 and (out / "test_predictions.jsonl").is_file()


def test_finetuning_tags_people_daily_entities(bilm, tmp_path):
    out = tmp_path / "ner"
    argv = ["elmo", "finetune", "--model", str(bilm), "--task", "peoples-daily-ner", "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--max-train-examples", "200", "--max-chars", "24"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "f1" and 0 <= summary["test"] <= 1
    lines = [json.loads(x) for x in (out / "test_predictions.jsonl").read_text("utf-8").splitlines()]
    assert len(lines) == 1899 and all(len(x["gold"]) == len(x["predicted"]) for x in lines)  # a tag per character


def test_a_task_model_leaves_the_bilm_frozen():
    torch.manual_seed(0)
    bilm = BiLM(CONFIG)
    task = ElmoTask(bilm, num_labels=3, tagging=True)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == {"mix.scalars", "mix.gamma", "head.weight", "head.bias"}
    ids, lengths = batch(CharVocab(list("今天好")), ["今天好", "好"], 10)
    assert task(ids, lengths).shape == (2, 3, 3)  # a tag per character, <S> and </S> dropped


def test_the_loss_falls_on_the_built_in_corpus(tmp_path):
    out = tmp_path / "pd"
    argv = ["elmo", "train", "--out", str(out), "--corpus", "peoples-daily", "--steps", "100", "--eval-every", "25"]
    assert main([*argv, "--hidden-size", "32", "--embedding-size", "16", "--lr", "1e-2", "--warmup", "10"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval"] for r in rows if "eval" in r]
    vocab = json.loads((out / "summary.json").read_text())["vocab"]
    losses = [e["loss"] for e in evals]
    assert losses[-1] < math.log(vocab) - 1.5  # far below the uniform guess over its characters
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))  # and falling at every evaluation
    assert losses[-1] < losses[0] - 0.15
    assert abs(evals[-1]["forward_loss"] - evals[-1]["backward_loss"]) < 1.0  # both directions learn
