"""ERNIE 2.0's continual multi-task pretraining (Sun et al. 2020; seed 002): tasks added one stage after another,
the earlier ones kept, each with a task embedding added to the input.

The tasks (`TASKS`, in the order of their task ids, which are the rows of the encoder's `task_type` table):
- `knowledge`: ERNIE's knowledge masking, MLM over phrase or entity units masked whole (the recipe's `--masking`);
- `tdr`: token–document relation, per token: does this token occur in the document's other segments;
- `reorder`: sentence reordering, per sequence: which of the 9 (piece count, order) classes shuffled it;
- `distance`: sentence distance, per pair: adjacent, same document, or other documents (tasks.py builds the data).

`TaskMix` is the training data: one `PretrainingData` per task (its own instances and masking unit) and the tasks of
the current stage. `Ernie2Pretraining` is the objective: one encoder with the task embedding, and a head per task.

Choices:
- A stage is a phase of the loop (`loop.Phase.tasks`, the recipe's `tasks`): stage k trains the tasks it names, the
  recipe's stage k being tasks 1..k, each stage an equal share of the steps.
- Each micro-batch comes from one task, in turn: micro-batch i of a stage is the stage's task i mod k (round-robin).
  The rule is exact and needs no state: every task gets the same number of batches, and a resumed stage finds each
  task's position from the micro-batch count alone (each task's stream is seeded, so skipping its first batches
  rebuilds them exactly). The paper does not state its sampling rule; round-robin gives every task of the stage
  the same share, and with gradient accumulation a step's loss is the sum of the tasks' mean losses.
- The task id is the batch field `task_ids` (B,), given to the encoder as `task_type` ids for every token: ERNIE's
  `task_type_ids` (HF `ErnieModel`). Fine-tuning uses row 0, the knowledge-masking task's, as PaddleNLP's ERNIE
  fine-tuning does by default.
- Every task's loss is averaged over its own units (masked tokens, labelled tokens, sequences) and the losses are
  summed with weight 1, as the paper sums its task losses. The structure tasks train on unmasked text.
- Heads: the MLM head is the transformers one (the folder is an `ErnieForMaskedLM`, with the pooler the sentence
  tasks trained, so `ErnieModel` reads it whole); the three structure heads are single linear layers — on every
  token's state for `tdr`, on the pooled [CLS] for `reorder` and `distance` — saved beside the weights as
  `ernie2_heads.safetensors` and read back by `--init`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.hf import load_side_module, save_side_tensors
from bertkit.model import BertEncoder, MLMHead, init_weights
from bertkit.pretrain.dataset import Epoch, PretrainingData
from bertkit.pretrain.objectives import Batch, Loss, ObjectiveOutput, PretrainingObjective, Ratio, masked_lm
from bertkit.pretrain.task_names import TASKS  # task id = place in TASKS
from bertkit.pretrain.tasks import DISTANCE_CLASSES, REORDER_CLASSES

HEADS_FILE = "ernie2_heads.safetensors"
# Per task: the instance builder (`dataset.INSTANCE_BUILDERS`) and masking unit of its data; knowledge masking's
# are the recipe's (None here).
TASK_DATA = {
    "knowledge": (None, None),
    "tdr": ("tdr", "none"),
    "reorder": ("reorder", "none"),
    "distance": ("distance", "none"),
}
# The fields every task's rows carry, so batches and held-out rows of different tasks stack: (per token?, default)
SHARED_FIELDS = {"tdr_labels": (True, np.int8), "sentence_label": (False, np.int64)}


@dataclass
class TaskMix:
    """The data of a multi-task stage: `data[name]` for every task of the run, and `tasks`, the stage's (trained now).
    It stands where a `PretrainingData` does in the loop (`batches`, `epoch`, `max_seq_length`, the vocabulary and
    documents of the unigram baseline), and `replace(mix, tasks=...)` picks a stage (`loop.phase_data`)."""

    data: dict[str, PretrainingData]
    tasks: tuple[str, ...]
    max_seq_length: int = 128
    unit: str | None = None  # a phase's masking unit, for knowledge masking (None: the recipe's)

    @property
    def vocab(self):
        return self._first.vocab

    @property
    def doc_ids(self):
        return self._first.doc_ids

    @property
    def documents(self):
        return self._first.documents

    @property
    def _first(self) -> PretrainingData:
        return next(iter(self.data.values()))

    def _data(self, name: str) -> PretrainingData:
        """The task's data in this stage: its own epochs, seeded by the stage's tasks too, so a task met again in
        a later stage reads other documents in another order with other masks, not its first stage's again."""
        unit = {"unit": self.unit} if self.unit is not None and name == "knowledge" else {}
        data = self.data[name]
        stage = int.from_bytes(hashlib.sha256(",".join(self.tasks).encode()).digest()[:4], "little")
        return replace(data, max_seq_length=self.max_seq_length, seed=data.seed * 1_000_003 + stage, **unit)

    def batches(self, batch_size: int, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, int, dict]]:
        """Endless (0, i, batch): micro-batch i of the stage is from task `tasks[i % k]` (module docstring). `start`
        counts micro-batches of the stage; `epoch` is always 0 (each task keeps its own epochs)."""
        k = len(self.tasks)
        streams = []
        for j, name in enumerate(self.tasks):
            done = len(range(j, start, k))  # this task's batches among the stage's first `start`
            batches = self._data(name).batches(batch_size)
            streams.append((name, itertools.islice(batches, done, None)))
        for i in itertools.count(start):
            name, stream = streams[i % k]
            yield 0, i, with_task(next(stream)[2], name)

    def epoch(self, epoch: int) -> Epoch:
        """Held-out rows of the stage's tasks, interleaved row by row (as many of each task as the smallest has), so
        the evaluation's first batches hold every task."""
        parts = [with_task_rows(self._data(name).epoch(epoch), name) for name in self.tasks]
        n = min(len(p) for p in parts)
        order = np.arange(n * len(parts)).reshape(n, len(parts)).T.reshape(-1)  # part-major -> interleaved
        return Epoch.concat([p.take(np.arange(n)) for p in parts]).take(np.argsort(order, kind="stable"))


def task_mix(data: PretrainingData, stages: tuple[tuple[str, ...], ...]) -> TaskMix:
    """The mix over `data`'s documents: knowledge masking as `data` is, every other task of the stages with its own
    instances (tasks.py) and no masking; the first stage's tasks to start with."""
    names = [t for t in TASKS if any(t in stage for stage in stages)]
    per_task = {}
    for name in names:
        builder, unit = TASK_DATA[name]
        per_task[name] = data if builder is None else replace(data, objective=builder, unit=unit)
    return TaskMix(per_task, stages[0], data.max_seq_length)


def with_task(batch: Batch, name: str) -> Batch:
    """The batch with its task's id (`task_ids`) and the shared fields it lacks, filled with 0 (no label)."""
    B, T = batch["input_ids"].shape
    batch["task_ids"] = torch.full((B,), TASKS.index(name), dtype=torch.long)
    for field, (per_token, dtype) in SHARED_FIELDS.items():
        if field not in batch:
            batch[field] = torch.zeros((B, T) if per_token else (B,), dtype=getattr(torch, np.dtype(dtype).name))
    return batch


def with_task_rows(epoch: Epoch, name: str) -> Epoch:
    """The epoch's rows with the task id and the shared fields, as `with_task` gives a batch."""
    n, L = epoch.input_ids.shape
    tokens, sequences = dict(epoch.token_fields), dict(epoch.sequence_fields)
    sequences["task_ids"] = np.full(n, TASKS.index(name), dtype=np.int64)
    for field, (per_token, dtype) in SHARED_FIELDS.items():
        target = tokens if per_token else sequences
        target.setdefault(field, np.zeros((n, L) if per_token else n, dtype=dtype))
    return Epoch(
        epoch.input_ids, epoch.labels, epoch.token_type_ids, epoch.lengths, epoch.next_sentence_label, tokens, sequences
    )


class StructureHeads(nn.Module):
    """The structure tasks' heads: `tdr` (H -> 1, per token), `reorder` (H -> 9) and `distance` (H -> 3), pooled."""

    def __init__(self, config):
        super().__init__()
        H = config.hidden_size
        self.tdr = nn.Linear(H, 1)
        self.reorder = nn.Linear(H, len(REORDER_CLASSES))
        self.distance = nn.Linear(H, len(DISTANCE_CLASSES))
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def save(self, folder: str | Path) -> None:
        save_side_tensors(Path(folder) / HEADS_FILE, self.state_dict(), {"tasks": ",".join(TASKS)})

    def load(self, folder: str | Path) -> None:
        """Read `ernie2_heads.safetensors`; a missing, unknown or mis-shaped tensor is a CheckpointError naming it."""
        load_side_module(self, Path(folder) / HEADS_FILE, "a model of another width?")


class Ernie2Pretraining(PretrainingObjective):
    """Every task's loss on the rows of its task (a batch may mix tasks; the loop gives one task per micro-batch)."""

    def __init__(self, encoder: BertEncoder, mlm: MLMHead, heads: StructureHeads, label_smoothing: float = 0.0):
        super().__init__()
        if encoder.pooler is None:
            raise ValueError("ERNIE 2.0's sentence tasks read the pooled [CLS]: the encoder needs its pooler")
        if encoder.config.extra_embeddings.get("task_type", 0) < len(TASKS):
            raise ValueError(f"ERNIE 2.0 needs a task_type table of {len(TASKS)} rows, one per task")
        self.encoder, self.mlm, self.structure = encoder, mlm, heads
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm}

    def save_extra(self, folder: Path) -> None:
        self.structure.save(folder)

    def units(self, batch: Batch) -> dict[str, int]:
        task = batch["task_ids"]
        return {
            "mlm": int((batch["labels"] != -100).sum()),
            "tdr": int((batch["tdr_labels"] > 0).sum()),
            "reorder": int((task == TASKS.index("reorder")).sum()),
            "distance": int((task == TASKS.index("distance")).sum()),
        }

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads what `BertPretraining` reads (no NSP label), `task_ids` (B,), `tdr_labels` (B, T: 2 the token occurs
        elsewhere in the document, 1 it does not, 0 no label) and `sentence_label` (B,)."""
        ids, mask, task = batch["input_ids"], batch.get("attention_mask"), batch["task_ids"]
        task_type = task[:, None].expand_as(ids)  # (B, T)
        out = self.encoder(
            ids, mask, batch.get("token_type_ids"), position_ids=batch.get("position_ids"),
            extra_ids={"task_type": task_type},
        )  # fmt: skip
        hidden = out.last_hidden_state  # (B, T, H)
        mlm, metrics, logits = masked_lm(self.mlm, self.encoder, hidden, batch, self.label_smoothing)
        losses = {"mlm": mlm}
        tdr = batch["tdr_labels"]  # (B, T)
        labelled = tdr > 0
        truth = (tdr[labelled] == 2).float()  # (N,)
        tdr_logits = self.structure.tdr(hidden[labelled]).squeeze(-1).float()  # (N,)
        losses["tdr"] = Loss(F.binary_cross_entropy_with_logits(tdr_logits, truth, reduction="sum"), len(truth))
        metrics["tdr_accuracy"] = Ratio(int(((tdr_logits > 0).float() == truth).sum()), len(truth))
        # the share of tokens that occur elsewhere: a constant guess scores max(share, 1 - share)
        metrics["tdr_positive_share"] = Ratio(int(truth.sum()), len(truth))
        for name in ("reorder", "distance"):
            rows = task == TASKS.index(name)  # (B,)
            labels = batch["sentence_label"][rows]
            head = getattr(self.structure, name)
            task_logits = head(out.pooler_output[rows]).float()  # (n, classes)
            loss = F.cross_entropy(task_logits, labels, reduction="sum", label_smoothing=self.label_smoothing)
            losses[name] = Loss(loss, len(labels))
            metrics[f"{name}_accuracy"] = Ratio(int((task_logits.argmax(-1) == labels).sum()), len(labels))
        return ObjectiveOutput(losses, metrics, {"mlm_logits": logits})
