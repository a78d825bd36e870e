"""The pretraining run's picture: loss, accuracy against the unigram baseline, throughput and learning rate by
step, with the length schedule's phases marked, in one PNG written beside the log (then renamed into place)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Row keys that are not an objective's loss or metric: they get panels of their own, or none.
NOT_METRICS = {"step", "epoch", "lr", "grad_norm", "tokens_per_s", "seconds_per_step", "max_seq_length"}
HELD_OUT_ONLY = {"masked_tokens"}


def plot_metrics(log_path: Path, png_path: Path) -> list[str]:
    """Loss, accuracy, throughput and learning rate against step, in one PNG; returns the labels of the loss and
    accuracy panels' lines. Every loss (`NAME_loss`) and every metric an objective logs is drawn, by its name:
    losses on a log scale (ELECTRA's per-token RTD loss sits far below the MLM loss), metrics (ratios) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "eval" not in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    if not train:
        return []
    steps = [r["step"] for r in train]
    names = list(dict.fromkeys(k for r in train for k in r if k not in NOT_METRICS))
    held_out = list(dict.fromkeys(k for e in evals for k in e if k not in NOT_METRICS | HELD_OUT_ONLY))
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    for name in names:
        a = ax[0, 0] if name.endswith("_loss") else ax[0, 1]
        points = [(r["step"], r[name]) for r in train if name in r]
        style = "--" if name.endswith("_base_rate_loss") else "-"  # a reference line (ELECTRA's H(p)), not trained
        a.plot(*zip(*points, strict=True), style, label=f"train {name.removesuffix('_loss')}")
    for name in held_out:
        a = ax[0, 0] if name.endswith("_loss") else ax[0, 1]
        points = [(e["step"], e[name]) for e in evals if name in e]
        # the baselines the model must beat: the cloze accuracy's unigram guess, the RTD loss's base rate
        style = "--" if name == "unigram_accuracy" or name.endswith("_base_rate_loss") else "o-"
        a.plot(*zip(*points, strict=True), style, label=f"held-out {name.removesuffix('_loss')}")
    positive = all(y > 0 for line in ax[0, 0].get_lines() for y in line.get_ydata())
    ax[0, 0].set(title="loss", xlabel="step", yscale="log" if positive else "linear")  # a loss of 0: one-row batches
    ax[0, 1].set(title="accuracy", xlabel="step", ylim=(0, 1))
    labels = [line.get_label() for a in ax[0] for line in a.get_lines()]
    ax[1, 0].plot(steps, [r["tokens_per_s"] for r in train])
    ax[1, 0].set(title="throughput (real tokens / s)", xlabel="step")
    ax[1, 1].plot(steps, [r["lr"] for r in train])
    ax[1, 1].set(title="learning rate", xlabel="step")
    lengths = [r.get("max_seq_length") for r in train]
    changes = [(s, n) for s, n, prev in zip(steps[1:], lengths[1:], lengths, strict=False) if n != prev]
    for a in ax.flat:
        for s, n in changes:  # the length schedule's phases
            a.axvline(s, color="grey", ls=":", lw=1)
            a.text(s, 1, f" {n} tokens", transform=a.get_xaxis_transform(), va="top", fontsize=8, color="grey")
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
    return labels
