"""The pretraining run's picture: loss, accuracy against the unigram baseline, throughput and learning rate by
step, with the length schedule's phases marked, in one PNG written beside the log (then renamed into place)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def plot_metrics(log_path: Path, png_path: Path) -> None:
    """Loss, accuracy, throughput and learning rate against step, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "eval" not in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    if not train:
        return
    steps = [r["step"] for r in train]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    ax[0, 0].plot(steps, [r["mlm_loss"] for r in train], label="train MLM")
    if "nsp_loss" in train[0]:
        ax[0, 0].plot(steps, [r["nsp_loss"] for r in train], label="train NSP")
    if "rtd_loss" in train[0]:  # per token, before λ: on the MLM loss's scale it would be a flat line
        ax[0, 0].plot(steps, [10 * r["rtd_loss"] for r in train], label="train RTD × 10")
    if evals:
        ax[0, 0].plot([e["step"] for e in evals], [e["mlm_loss"] for e in evals], "o-", label="held-out MLM")
    ax[0, 0].set(title="loss", xlabel="step")
    ax[0, 1].plot(steps, [r["mlm_accuracy"] for r in train], label="train MLM")
    if evals:
        cloze = [e["cloze_accuracy"] for e in evals]
        ax[0, 1].plot([e["step"] for e in evals], cloze, "o-", label="held-out at [MASK]")
        ax[0, 1].plot(
            [e["step"] for e in evals], [e["unigram_accuracy"] for e in evals], "--", label="unigram baseline"
        )
        if "nsp_accuracy" in evals[0]:
            ax[0, 1].plot([e["step"] for e in evals], [e["nsp_accuracy"] for e in evals], "s-", label="held-out NSP")
        if "rtd_recall" in evals[0]:
            ax[0, 1].plot([e["step"] for e in evals], [e["rtd_recall"] for e in evals], "^-", label="replaced found")
    ax[0, 1].set(title="accuracy", xlabel="step", ylim=(0, 1))
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
