"""A linear-chain CRF over per-token emission scores: the optional last layer of a token classifier (`--crf`).

For tags y_0 .. y_{n-1} of one sequence with emissions E (n, C):

    score(y) = start[y_0] + Σ_t E[t, y_t] + Σ_{t>0} transitions[y_{t-1}, y_t] + end[y_{n-1}]
    P(y) = exp(score(y)) / Z,   Z = Σ_y' exp(score(y'))

Training minimises the negative log-likelihood log Z - score(gold), with log Z from the forward algorithm
(O(n C²) instead of the C^n sequences); decoding is Viterbi (the single best sequence, not the best tag at
each position). tests/test_crf.py checks both against brute-force enumeration of every tag sequence.

Choices:
- Tag-scheme constraints are fixed, not learned: a move the scheme forbids (BIO: O → I-X, B-X → I-Y, a
  sequence that starts with I-X; BMES: B → B, M → S, a sequence that ends in B or M, ...) gets a score of
  `FORBIDDEN` = -10,000 added in training and in decoding, so the CRF spends no probability on it and Viterbi
  never returns it. Constraints come from the label names, so they are rebuilt on load, never saved.
- The learned scores start at zero, so an untrained CRF decodes exactly as the per-token argmax would.
- Saved as `crf.safetensors` beside `model.safetensors` (tensors `transitions` (C, C), indexed [from, to],
  `start_transitions` (C,) and `end_transitions` (C,)), not inside it: `transformers`'
  AutoModelForTokenClassification loads the folder unchanged (it reads only the files it knows) and gives
  the emission logits, and model.safetensors keeps bertkit's rule that every tensor in it is accounted for.
- Sequences are given as emissions (B, T, C) with a mask (B, T) that is True on a prefix of each row: the
  tagger passes the first piece of each word, compacted to the left (`compact`).
- A training window cut out of a longer sentence is not a sentence: its gold path may start inside an entity
  (I-X) or a word (M, E) and end before one closes (B, M). Such a window gets neither the start nor the end
  scores (learned or forbidden) at the edge where it was cut: `starts` / `ends` (B,) say which rows begin
  / end at the sentence's own boundary. Charging sentence-start rules at a cut would make every such gold path
  cost FORBIDDEN (the training loss is then that constant, flat) and pull the edge emissions against the
  data. Prediction decodes whole recombined sentences, with every constraint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bertkit.errors import CheckpointError

FORBIDDEN = -10000.0
CRF_FILE = "crf.safetensors"
CRF_TENSORS = ("transitions", "start_transitions", "end_transitions")


def allowed_transitions(labels: Sequence[str], scheme: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start (C,), transitions (C, C) [from, to], end (C,)): True where the tag scheme allows the move.

    BIO (IOB2): I-X only after B-X or I-X, never first. BMES: a word is S or B M* E, so B and M are followed by
    M or E, E and S by B or S; a sequence starts with B or S and ends with E or S. Any other scheme: all allowed.
    """
    C = len(labels)
    start, end = torch.ones(C, dtype=torch.bool), torch.ones(C, dtype=torch.bool)
    trans = torch.ones(C, C, dtype=torch.bool)
    if scheme == "bio":
        for j, to in enumerate(labels):
            if to.startswith("I-"):
                start[j] = False
                for i, frm in enumerate(labels):
                    trans[i, j] = frm in (f"B-{to[2:]}", f"I-{to[2:]}")
    elif scheme == "bmes":
        inside = {"B": "ME", "M": "ME", "E": "BS", "S": "BS"}  # what may follow each tag
        for i, frm in enumerate(labels):
            for j, to in enumerate(labels):
                trans[i, j] = to in inside[frm]
        start = torch.tensor([t in "BS" for t in labels])
        end = torch.tensor([t in "ES" for t in labels])
    return start, trans, end


class CRF(nn.Module):
    def __init__(self, labels: Sequence[str], scheme: str | None = None):
        super().__init__()
        C = len(labels)
        self.transitions = nn.Parameter(torch.zeros(C, C))  # [from, to]
        self.start_transitions = nn.Parameter(torch.zeros(C))
        self.end_transitions = nn.Parameter(torch.zeros(C))
        start, trans, end = allowed_transitions(labels, scheme)
        # Not persistent: rebuilt from the labels on load (see the module docstring).
        for name, allowed in (("start_penalty", start), ("transition_penalty", trans), ("end_penalty", end)):
            self.register_buffer(name, (~allowed).float() * FORBIDDEN, persistent=False)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The learned start (C,), transition (C, C) and end (C,) scores with the forbidden moves added."""
        return (
            self.start_transitions + self.start_penalty,
            self.transitions + self.transition_penalty,
            self.end_transitions + self.end_penalty,
        )

    def edge_scores(self, starts: torch.Tensor | None, ends: torch.Tensor | None, n: int):
        """Start and end scores per row, (B, C) each: zero at an edge where a window was cut (see the module
        docstring); `starts` / `ends` None means every row is a whole sentence."""
        start, trans, end = self.scores()
        start, end = start.expand(n, -1), end.expand(n, -1)
        if starts is not None:
            start = torch.where(starts[:, None], start, torch.zeros_like(start))
        if ends is not None:
            end = torch.where(ends[:, None], end, torch.zeros_like(end))
        return start, trans, end

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor, starts=None, ends=None) -> torch.Tensor:
        """log Z for each sequence by the forward algorithm: (B, T, C), (B, T) -> (B,). Every row needs a
        real first position."""
        start, trans, end = self.edge_scores(starts, ends, len(emissions))
        alpha = start + emissions[:, 0]  # (B, C): log-sum of the scores of all paths ending in each tag
        for t in range(1, emissions.shape[1]):
            # (B, C_from, 1) + (C_from, C_to) + (B, 1, C_to), summed out over C_from
            step = torch.logsumexp(alpha[:, :, None] + trans + emissions[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha + end, dim=-1)

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, starts=None, ends=None):
        """The score of the given tag sequences: (B, T, C), (B, T), (B, T) -> (B,). Tags past the mask are ignored."""
        start, trans, end = self.edge_scores(starts, ends, len(emissions))
        tags = tags.clamp(min=0).masked_fill(~mask, 0)  # -100 padding -> any valid index; masked out below
        mask_f = mask.to(emissions.dtype)
        first_score = start.gather(1, tags[:, :1]).squeeze(1)
        total = first_score + (emissions.gather(-1, tags[..., None]).squeeze(-1) * mask_f).sum(1)
        total = total + (trans[tags[:, :-1], tags[:, 1:]] * mask_f[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0)[:, None])  # (B, 1) tag at each row's end
        return total + end.gather(1, last).squeeze(1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, starts=None, ends=None):
        """Negative log-likelihood of the gold tags, per sequence: (B,). `starts` / `ends` (B,) bool: which
        rows begin / end where their sentence does (None: all of them)."""
        emissions = emissions.float()
        return self.log_partition(emissions, mask, starts, ends) - self.score(emissions, tags, mask, starts, ends)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the highest-scoring tag sequence of each row, as many tags as the row's mask has."""
        start, trans, end = self.scores()
        emissions = emissions.float()
        B, T, C = emissions.shape
        best = start + emissions[:, 0]  # (B, C): best score of a path ending in each tag
        back = []  # T-1 × (B, C): the previous tag on that best path
        for t in range(1, T):
            step, prev = (best[:, :, None] + trans).max(dim=1)  # (B, C_to) over C_from
            step = step + emissions[:, t]
            keep = ~mask[:, t, None]
            best = torch.where(keep, best, step)
            # A padded position points at the same tag, so following it back changes nothing.
            back.append(torch.where(keep, torch.arange(C).expand(B, C), prev))
        last = (best + end).argmax(-1)  # (B,)
        paths = [last]
        for prev in reversed(back):
            last = prev.gather(1, last[:, None]).squeeze(1)
            paths.append(last)
        tags = torch.stack(paths[::-1], dim=1)  # (B, T)
        return [row[: int(n)].tolist() for row, n in zip(tags, mask.sum(1), strict=True)]

    def save(self, folder: str | Path) -> None:
        from bertkit.hf import save_side_tensors

        save_side_tensors(Path(folder) / CRF_FILE, {name: getattr(self, name) for name in CRF_TENSORS})

    def load(self, folder: str | Path) -> None:
        """Read `crf.safetensors`; a missing, unknown or mis-shaped tensor is a CheckpointError naming it."""
        from bertkit.hf import load_side_tensors

        path = Path(folder) / CRF_FILE
        state = load_side_tensors(path, list(CRF_TENSORS))
        with torch.no_grad():
            for name in CRF_TENSORS:
                ours = getattr(self, name)
                if state[name].shape != ours.shape:
                    raise CheckpointError(
                        f"{path}: tensor '{name}' has shape {tuple(state[name].shape)} but the model has "
                        f"{ours.shape[-1]} labels, so {tuple(ours.shape)}"
                    )
                ours.copy_(state[name])


def compact(emissions: torch.Tensor, labels: torch.Tensor):
    """Move the labelled positions (label != -100) of each row to its front, in order: emissions (B, T, C),
    labels (B, T) -> emissions, tags, mask, and `keep` (B,), the rows that have a labelled position (the
    others are dropped)."""
    labelled = labels != -100
    keep = labelled.any(1)
    emissions, labels, labelled = emissions[keep], labels[keep], labelled[keep]
    order = torch.argsort((~labelled).to(torch.int8), dim=1, stable=True)  # labelled positions first, in order
    emissions = emissions.gather(1, order[..., None].expand(-1, -1, emissions.shape[-1]))
    mask = torch.arange(labels.shape[1], device=labels.device) < labelled.sum(1, keepdim=True)
    return emissions, labels.gather(1, order), mask, keep
