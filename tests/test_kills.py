"""`--overwrite` against failures and kills at every point: the old run is intact until the new one is complete.

(`--resume` against kills is test_cli.py's `test_killed_anywhere_resumes_to_the_same_losses`; its refusals are
test_bad_input.py's.)
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import one_thread, save_tiny_bert, snapshot  # noqa: F401 - an autouse fixture

from bertkit.cli import main
from bertkit.finetune.loop import ASIDE
from bertkit.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model, a small classification task and an old run (with a file of the user's beside it)."""
    root = tmp_path_factory.mktemp("kills")
    tok = Tokenizer.train(iter(["我们今天很好", "差 一般 好"] * 5), vocab_size=60, min_frequency=1)
    save_tiny_bert(root / "model", tok)
    rows = [("我们很好", "pos"), ("今天很差", "neg"), ("很好很好", "pos"), ("差", "neg")] * 6
    (root / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), "utf-8")
    args = f"finetune --task classification --model {root}/model --train {root}/train.csv --dev {root}/train.csv "
    args += f"--test {root}/train.csv --lr 1e-3 --max-seq-length 16 --batch-size 4"
    assert main(f"{args} --epochs 1 --out {root}/run".split()) == 0
    (root / "run" / "notes.txt").write_text("the user's own file\n")
    return root, args


def _old_run_intact(run, before):
    assert snapshot(run) == before
    assert not (run / ASIDE).exists() and not (run / f"{ASIDE}.done").exists()


@pytest.mark.parametrize(
    "where, error",
    [
        ("bertkit.finetune.loop.build_model", OSError(28, "No space left on device")),
        ("bertkit.finetune.loop.score_test", KeyboardInterrupt()),
        ("bertkit.finetune.loop.save_task_model", OSError(28, "No space left on device")),
        ("bertkit.finetune.loop._write_summary", RuntimeError("a bug")),
    ],
)
def test_overwrite_that_fails_anywhere_keeps_the_old_run(setup, monkeypatch, capsys, where, error):
    root, args = setup
    run = root / "run"
    before = snapshot(run)

    def fail(*a, **k):
        raise error

    module, name = where.rsplit(".", 1)
    monkeypatch.setattr(sys.modules[module], name, fail)
    argv = f"{args} --epochs 2 --seeds 0 1 --out {run} --overwrite".split()
    if isinstance(error, RuntimeError):  # a bug is a traceback, but the old run still comes back
        with pytest.raises(RuntimeError):
            main(argv)
    else:
        assert main(argv) in (2, 130)
    _old_run_intact(run, before)


def test_overwrite_of_a_diverging_run_keeps_the_old_run(setup, capsys):
    root, args = setup
    run = root / "run"
    before = snapshot(run)
    argv = f"{args.replace('--lr 1e-3', '--lr 1')} --epochs 3 --out {run} --overwrite --label-smoothing 0".split()
    code = main(argv)
    if code == 2:  # the loss or the weights went non-finite: a failure, and nothing of the old run is lost
        _old_run_intact(run, before)
    else:  # it trained to finite weights: a complete new run replaced the old one
        assert json.loads((run / "summary.json").read_text())["test"]


def _moments(run):
    """Points inside a run with --overwrite at which it is killed."""
    return [
        ("old run being set aside", lambda: (run / f"{ASIDE}.tmp").is_dir()),
        ("old run set aside", lambda: (run / ASIDE).is_dir()),
        ("new log written", lambda: (run / ASIDE).is_dir() and (run / "seed-0" / "metrics.jsonl").is_file()),
        ("new model written", lambda: (run / ASIDE).is_dir() and (run / "seed-0" / "model").is_dir()),
        ("new summary written", lambda: (run / ASIDE).is_dir() and (run / "summary.json").is_file()),
    ]


@pytest.mark.slow
def test_overwrite_killed_anywhere_leaves_the_old_run_or_the_complete_new_one(setup, tmp_path):
    root, args = setup
    run = root / "run"
    before = snapshot(run)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bertkit = [sys.executable, "-m", "bertkit.cli"]
    outcomes = []
    for name, moment in _moments(run):
        argv = f"{args} --epochs 4 --seeds 0 1 --out {run} --overwrite".split()
        proc = subprocess.Popen([*bertkit, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and not moment() and time.time() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The next command to look at the folder puts things right before it says anything else.
        result = subprocess.run([*bertkit, *argv[:-1]], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "already holds a run" in result.stderr, (name, result.stderr)
        if snapshot(run) == before:
            outcomes.append("old")
        else:  # killed after the new run was complete: it is whole, and the old one is gone
            summary = json.loads((run / "summary.json").read_text())
            assert summary["test"] and (run / "seed-0" / "model" / "config.json").is_file(), name
            assert (run / "notes.txt").read_text() == "the user's own file\n"
            outcomes.append("new")
            before = snapshot(run)
        assert not (run / ASIDE).exists() and not (run / f"{ASIDE}.done").exists()
    assert "old" in outcomes, outcomes  # killed mid-run at least once (the set-aside moment may be missed)


def test_overwrite_with_a_truncated_model_keeps_the_old_run(setup, capsys, tmp_path):
    import shutil

    root, args = setup
    run, cut = root / "run", tmp_path / "cut"
    shutil.copytree(root / "model", cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # a copy cut short
    before = snapshot(run)
    argv = f"{args.replace(f'--model {root}/model', f'--model {cut}')} --epochs 1 --out {run} --overwrite"
    assert main(argv.split()) == 2
    assert "model.safetensors" in capsys.readouterr().err
    _old_run_intact(run, before)


def test_the_paths_finetune_prints_exist(setup, capsys, tmp_path):
    root, args = setup
    for extra in ("--seeds 0", "--seeds 0 1", "--seeds 0 1 --lr 1e-3 3e-3"):
        out = tmp_path / extra.replace(" ", "_")
        assert main(f"{args.replace('--lr 1e-3', '')} {extra} --epochs 1 --out {out}".split()) == 0
        lines = capsys.readouterr().out.splitlines()
        shown = [p for line in lines if line.startswith(("curves: ", "log: ")) for p in line.split()[1:]]
        assert shown and all(os.path.isfile(p) for p in shown), (extra, lines[-2:])
