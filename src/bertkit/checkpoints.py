"""Resumable checkpoints that survive a crash at any moment: `OUT/checkpoints/step-00000500/`, the last N kept.

A checkpoint is a Hugging Face model folder plus `trainer_state.pt` (weights, optimizer, schedule, data
position, every RNG) and, written last, `checkpoint.json` with the SHA-256 of every other file. It is built in
`step-N.tmp/`, each file and the folder fsynced, then renamed into place and the parent fsynced, so after a
power cut or SIGKILL a checkpoint folder is either whole or absent; a `.tmp` folder is never read.

On resume the newest checkpoint whose files match their checksums is used. One that is truncated or corrupt
on disk (a full disk, a copy cut short) is skipped with a warning that names it and the one used instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bertkit.hf import fsync

FOLDER = "checkpoints"
MANIFEST = "checkpoint.json"
STATE = "trainer_state.pt"


def rng_state() -> dict:
    """Every RNG a run draws from: torch (dropout), CUDA when present, numpy and Python's."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, write_model: Callable[[Path], None], state: dict, keep: int) -> Path:
    """Write checkpoint `step` (the model folder by `write_model(folder)`, then `state`), keep the newest `keep`."""
    root = Path(out) / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"step-{step:08d}"
    tmp = root / f"{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write_model(tmp)
    torch.save(state, tmp / STATE)
    sums = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "sha256": sums}, indent=2) + "\n", encoding="utf-8")
    for p in tmp.iterdir():
        fsync(p)
    fsync(tmp)
    shutil.rmtree(folder, ignore_errors=True)  # a checkpoint of the same step from before a resume
    os.replace(tmp, folder)
    fsync(root)
    for old in checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def checkpoints(out: Path) -> list[Path]:
    """The complete-looking checkpoint folders, oldest first."""
    root = Path(out) / FOLDER
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name)


def verify(folder: Path) -> str | None:
    """None when every file matches `checkpoint.json`, else what is wrong."""
    manifest = folder / MANIFEST
    try:
        sums = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{manifest.name} is missing or unreadable ({type(e).__name__})"
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its checksum (truncated or corrupt)"
    return None


def load_latest(out: Path) -> tuple[dict | None, Path | None, list[str]]:
    """(state, folder, warnings) of the newest sound checkpoint; (None, None, warnings) when there is none."""
    warnings = []
    for folder in reversed(checkpoints(out)):
        problem = verify(folder)
        if problem is None:
            state = torch.load(folder / STATE, map_location="cpu", weights_only=False)
            return state, folder, warnings
        warnings.append(f"checkpoint {folder} is damaged: {problem}")
    return None, None, warnings


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
