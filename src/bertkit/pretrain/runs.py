"""The run folder of a pretraining: what a new run or a `--resume` may find in it, checked before any data is read.

A new run never writes over an old one; a resume continues the run exactly or says why it cannot (it never
goes backwards, and never restarts from step 0 over a finished run or over damaged checkpoints); the log is
cut back to the checkpoint a resume starts from.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertkit.checkpoints import MANIFEST, checkpoints, verify
from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError


def check_out_dir(out_dir: str | Path, resume: bool) -> None:
    """A new run never writes over an old one: its log, config and checkpoint would be lost."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BertkitError(f"--out {out} is a file; pass a folder for the run")
    if (out / "config.json").exists():
        raise BertkitError(f"--out {out} is a model folder (config.json); write the run to another folder")
    found = [name for name in ("metrics.jsonl", "checkpoints") if (out / name).exists()]
    if found and not resume:
        raise BertkitError(
            f"--out {out} already holds a pretraining run ({', '.join(found)}); pass --resume to continue it, "
            "or choose another --out"
        )


RUN_FILES = ("metrics.jsonl", "checkpoints", "summary.json", "train_config.json", "model")


def check_resume(out_dir: str | Path, steps: int, settings: dict) -> None:
    """`--resume` continues the run in `out_dir` exactly or says why it cannot: it never goes backwards, and never
    restarts from step 0 over a finished run or over damaged checkpoints. A folder without a run is a new run (a
    script may always pass --resume), and so is an unfinished run killed before its first checkpoint: the same
    seed gives the same steps again. Checked before the corpus is read."""
    out = Path(out_dir)
    held = [name for name in RUN_FILES if (out / name).exists()]
    if not held:
        return
    saved = _read_json(out / "train_config.json").get("settings") or {}
    for name, value in settings.items():
        if name in saved and saved[name] != value:
            raise BertkitError(
                f"--resume: the run in {out} was started with --{name.replace('_', '-')} {_flag_value(saved[name])}, "
                f"not {_flag_value(value)} ({out}/train_config.json); resume with the run's flags, or start a new "
                "run in another --out"
            )
    damaged = []
    for folder in reversed(checkpoints(out)):
        problem = verify(folder)
        if problem is None:
            break
        damaged.append(f"{folder.name}: {problem}")
    else:
        if not damaged and not (out / "summary.json").exists() and not (out / "model").exists():
            return  # killed before its first checkpoint: nothing was saved that a restart would not redo
        why = "every checkpoint is damaged: " + "; ".join(damaged) if damaged else "no checkpoint was written"
        raise BertkitError(
            f"--resume: {out} holds a run ({', '.join(held)}) but nothing to resume from ({why}); to start afresh "
            "give another --out (or remove this one)"
        )
    step = _read_json(folder / MANIFEST)["step"]
    finished = _read_json(out / "summary.json").get("steps")
    if isinstance(finished, int) and steps < finished:  # the same --steps redoes the last steps, bit for bit
        raise BertkitError(
            f"--steps {steps}: the run in {out} has finished {finished} steps; give more --steps to continue it"
        )
    if steps < step:
        raise BertkitError(f"--steps {steps} is below the step of the run's newest checkpoint ({step}, {folder})")


def _read_json(path: Path) -> dict:
    """A small JSON file of the run's own, or {} where it is absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _flag_value(value) -> str:
    if isinstance(value, list):
        return " ".join(":".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    return "(not given)" if value is None else str(value)


def last_good(out: Path) -> str:
    kept = checkpoints(out)
    return f"nothing was saved; the last checkpoint is {kept[-1]}" if kept else "nothing was saved"


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from, so the log has each step once."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was killed
            print(f"warning: {path}: dropped a torn line ({line[:60]!r}) written as the run was stopped")
            continue
        if row.get("step", row.get("eval", {}).get("step", 0)) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def resume_run(out: Path, resume: bool, steps: int, parts: dict) -> int:
    """With `resume`, load the newest sound checkpoint of OUT into `parts` (state key -> an object with
    load_state_dict: model, optimizer, schedule), restore every RNG and cut the log back to its step; the step
    to continue from (0 for a new run). Damaged checkpoints are skipped with a warning."""
    import sys

    from bertkit.checkpoints import load_latest, set_rng_state

    state, folder, warnings = load_latest(out) if resume else (None, None, [])
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if state is None:
        return 0
    for key, part in parts.items():
        part.load_state_dict(state[key])
    set_rng_state(state["rng"])
    truncate_log(out / "metrics.jsonl", state["step"])
    print(f"resuming from {folder} (step {state['step']} of {steps})", file=sys.stderr)
    return state["step"]
