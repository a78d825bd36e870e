"""A short CPU run of every CLI command, and the one-line errors (exit code 2) for a user's mistakes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from bertkit.cli.table import main

CORPUS = "\n".join(
    f"第{i}篇文章。我们今天在北京开会，大家讨论经济改革的问题！人民日报记者报道了会议。"
    f"The meeting number {i} was held in Beijing? Everyone agreed."
    for i in range(60)
)


def run(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertkit: error:"), result.stderr
    assert fragment in lines[0], lines[0]


def test_params_counts_bert_base(capsys):
    assert main(["params", "bert-base"]) == 0
    assert "109,482,240" in capsys.readouterr().out
    assert main(["params", "bert-base-chinese"]) == 0
    assert "102,267,648" in capsys.readouterr().out


def test_params_on_a_folder(capsys, minilm_path):
    assert main(["params", str(minilm_path)]) == 0
    assert "22,713,216" in capsys.readouterr().out


def test_tokenize(capsys, minilm_path):
    assert main(["tokenize", "Hello, world!", "--model", str(minilm_path), "--pair", "Second one"]) == 0
    out = capsys.readouterr().out
    assert "[CLS]" in out and "hello" in out and "segment 1" in out
    assert "ids: 101 7592 1010 2088 999 102" in out


def test_tokenizer_train_then_tokenize(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    assert main(["tokenizer", "train", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    assert (tmp_path / "tok" / "vocab.txt").is_file()
    assert main(["tokenize", "我们在北京开会", "--model", str(tmp_path / "tok")]) == 0
    assert "北" in capsys.readouterr().out


@pytest.mark.slow
def test_pretrain_then_fill_mask_and_load_in_transformers(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--out",
        str(out),
        "--corpus",
        str(corpus),
        "--preset",
        "bert-tiny-chinese",
        "--vocab-size",
        "300",
        "--max-seq-length",
        "32",
        "--batch-size",
        "4",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--save-every",
        "3",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "held-out MLM accuracy" in result.stdout
    for name in ("model/config.json", "model/model.safetensors", "model/vocab.txt", "metrics.jsonl", "curves.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in rows)

    transformers = pytest.importorskip("transformers")
    model = transformers.BertForPreTraining.from_pretrained(out / "model")
    assert model.config.vocab_size <= 300

    result = run("fill-mask", str(out / "model"), "我们在北[MASK]开会。", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert "[MASK] #1:" in result.stdout

    result = run(*args, "--resume", "--steps", "8")
    assert result.returncode == 0, result.stderr

    # Continued pretraining of the folder just written: its vocabulary and heads are kept.
    more = tmp_path / "more"
    flags = "--max-seq-length 32 --batch-size 4 --steps 2".split()
    result = run(
        "pretrain",
        "--out",
        more,
        "--init",
        out / "model",
        "--corpus",
        corpus,
        *flags,
        "--cache-dir",
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert (more / "model" / "vocab.txt").read_text() == (out / "model" / "vocab.txt").read_text()


@pytest.mark.parametrize("masking", ["wwm", "span"])
def test_pretrain_with_whole_word_and_span_masking(tmp_path, masking):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "run"
    flags = "--preset bert-tiny-chinese --vocab-size 300 --max-seq-length 32 --batch-size 4 --steps 4 --objective full"
    flags += " --dropout 0"
    result = run(
        "pretrain",
        "--out",
        out,
        "--corpus",
        corpus,
        *flags.split(),
        "--masking",
        masking,
        "--cache-dir",
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert (out / "model" / "model.safetensors").is_file()
    assert list((tmp_path / "cache" / "shards").glob("*/word_starts-*.bin"))
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0
    if masking == "span":
        return
    # MLM-only models have no pooler (as BertForMaskedLM); continuing with SOP trains a new one
    from safetensors import safe_open

    def keys(folder):
        with safe_open(folder / "model" / "model.safetensors", "pt") as f:
            return set(f.keys())

    assert not any("pooler" in k for k in keys(out))
    more = tmp_path / "sop"
    flags = "--max-seq-length 32 --batch-size 4 --steps 2 --objective sop".split()
    result = run(
        "pretrain",
        "--out",
        more,
        "--init",
        out / "model",
        "--corpus",
        corpus,
        *flags,
        "--cache-dir",
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert "trains a new one" in result.stdout
    assert {"bert.pooler.dense.weight", "cls.seq_relationship.weight"} <= keys(more)


def test_missing_folder_is_one_line_error(tmp_path):
    assert_user_error(run("params", str(tmp_path / "nope")), "neither a preset")
    assert_user_error(run("fill-mask", str(tmp_path / "nope"), "a [MASK]"), "no such model folder")


def test_bad_config_and_weights(tmp_path, minilm_path):
    folder = tmp_path / "m"
    shutil.copytree(minilm_path, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_experts": 4}))
    assert_user_error(run("params", str(folder)), "unknown key 'num_experts'")
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 256, "num_attention_heads": 4}))
    assert_user_error(run("params", str(folder)), "has shape")


def test_fill_mask_needs_an_mlm_head(minilm_path):
    assert_user_error(run("fill-mask", str(minilm_path), "a [MASK] b"), "no MLM head")


def test_pretrain_bad_inputs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    base = ["pretrain", "--out", str(tmp_path / "run"), "--steps", "1", "--cache-dir", str(tmp_path / "cache")]
    assert_user_error(run(*base, "--corpus", str(empty)), "empty.txt")

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"good line\nstill good\n" + "caf\xe9\n".encode("latin-1"))
    assert_user_error(run(*base, "--corpus", str(latin1)), "line 3")

    good = tmp_path / "good.txt"
    good.write_text(CORPUS, encoding="utf-8")
    assert_user_error(run(*base, "--corpus", str(good), "--max-seq-length", "1024"), "max_position_embeddings")
    assert_user_error(run(*base, "--corpus", str(tmp_path / "missing.txt")), "missing.txt")
    assert not (tmp_path / "run" / "model").exists()


def test_same_arguments_and_seed_give_bit_identical_weights(tmp_path):
    """Two runs that each train their own vocabulary, in separate processes (hash seeds differ), fp32."""
    from safetensors.torch import load_file

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    weights = []
    for name in ("a", "b"):
        result = run(
            "pretrain",
            "--out",
            tmp_path / name,
            "--corpus",
            corpus,
            "--preset",
            "bert-tiny-chinese",
            "--vocab-size",
            "300",
            "--max-seq-length",
            "32",
            "--batch-size",
            "4",
            "--steps",
            "6",
            "--precision",
            "fp32",
            "--dropout",
            "0.1",
            "--cache-dir",
            tmp_path / f"cache-{name}",
        )
        assert result.returncode == 0, result.stderr
        weights.append(load_file(str(tmp_path / name / "model" / "model.safetensors")))
    assert (tmp_path / "a/model/vocab.txt").read_text() == (tmp_path / "b/model/vocab.txt").read_text()
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


@pytest.mark.slow
def test_killed_anywhere_resumes_to_the_same_losses(tmp_path):
    """SIGKILL at several moments, one of them while a checkpoint is being written; `--resume` then gives
    exactly the losses of a run that was never interrupted (fp32, one thread)."""
    import signal
    import time

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    tokenizer = tmp_path / "tok"
    assert run("tokenizer", "train", corpus, "--out", tokenizer, "--vocab-size", "300").returncode == 0

    def command(out):
        return [
            exe,
            "pretrain",
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--tokenizer",
            str(tokenizer),
            "--preset",
            "bert-tiny-chinese",
            "--max-seq-length",
            "32",
            "--batch-size",
            "4",
            "--steps",
            "40",
            "--save-every",
            "5",
            "--eval-every",
            "1000",
            "--log-every",
            "1",
            "--precision",
            "fp32",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]

    def losses(out):
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["mlm_loss"] for r in rows if "step" in r}

    env = os.environ | {"OMP_NUM_THREADS": "1"}
    assert subprocess.run(command(tmp_path / "full"), env=env, capture_output=True, timeout=600).returncode == 0
    full = losses(tmp_path / "full")

    def during_checkpoint_write(out):
        root = out / "checkpoints"
        return root.is_dir() and any(p.name.endswith(".tmp") for p in root.iterdir())

    def after_log_rows(n):
        return lambda out: (
            (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= n
        )

    for k, moment in enumerate([during_checkpoint_write, after_log_rows(12), after_log_rows(23)]):
        out = tmp_path / f"killed-{k}"
        proc = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while proc.poll() is None and not moment(out) and time.time() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if k:  # killed mid-run (the checkpoint-write moment is a few ms wide and may be missed)
            assert not (out / "model").exists() and (out / "metrics.jsonl").is_file()
        result = subprocess.run([*command(out), "--resume"], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        again = losses(out)
        assert again == full, k  # every step, the ones before the kill and the ones after, to the bit


def test_a_plain_process_exits_with_the_commands_code():
    """finish_process leaves by os._exit only in a torchrun rank (tests/test_distributed.py runs those); in a
    plain process it hands the code back, so `main` stays callable from Python and from pytest."""
    from bertkit.cli.table import finish_process

    assert finish_process(0) == 0 and finish_process(2) == 2
