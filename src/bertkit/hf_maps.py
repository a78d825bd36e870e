"""The name maps: one row per family (`FAMILIES`, a `FamilyMap`) saying how its Hugging Face folders name each
tensor and architecture, with the transforms an entry may carry. hf.py reads and writes folders through them.

Choices:
- Data, not code: a family is a row here and a row in config.FAMILY_SPECS; the loader never asks which family.
- An entry may carry transforms (litgpt's convert_hf_checkpoint): `TRANSPOSE` (GPT-2's Conv1D stores
  (in, out)), `Fuse(dim)` (our tensors in one: GPT-2's fused QKV), `Stack()`; they run in order on save and
  are undone in reverse on load, and the shape a file must have is theirs applied to our shapes.
- A row lists every tensor the family may hold; the model built from the config decides which it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

Shapes = list[tuple[int, ...]]


class Transpose:
    """A 2-D weight stored the other way round: GPT-2's Conv1D keeps (in, out) where nn.Linear has (out, in)."""

    def shapes(self, shapes: Shapes) -> Shapes:
        return [s[::-1] for s in shapes]

    def to_hf(self, tensors: list[torch.Tensor], shapes: Shapes | None = None) -> list[torch.Tensor]:
        return [t.t() for t in tensors]

    from_hf = to_hf  # its own inverse


@dataclass(frozen=True)
class Fuse:
    """Several of our tensors concatenated along `dim` into one (a fused QKV); split by our sizes on load."""

    dim: int = 0

    def shapes(self, shapes: Shapes) -> Shapes:
        fused = list(shapes[0])
        fused[self.dim] = sum(s[self.dim] for s in shapes)
        return [tuple(fused)]

    def to_hf(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat(tensors, self.dim)]

    def from_hf(self, tensors: list[torch.Tensor], shapes: Shapes) -> list[torch.Tensor]:
        return list(tensors[0].split([s[self.dim] for s in shapes], self.dim))


class Stack:
    """Several same-shaped tensors of ours stacked along a new first axis into one."""

    def shapes(self, shapes: Shapes) -> Shapes:
        return [(len(shapes), *shapes[0])]

    def to_hf(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.stack(tensors)]

    def from_hf(self, tensors: list[torch.Tensor], shapes: Shapes) -> list[torch.Tensor]:
        return list(tensors[0].unbind(0))


TRANSPOSE = Transpose()


@dataclass(frozen=True)
class Entry:
    """One Hugging Face tensor and the tensor(s) of ours it holds; `steps` turn ours into it, in order."""

    ours: tuple[str, ...]
    theirs: str
    steps: tuple = ()

    def hf_shape(self, shapes: Shapes) -> tuple[int, ...]:
        for step in self.steps:
            shapes = step.shapes(shapes)
        assert len(shapes) == 1, f"the name map entry for {self.theirs!r} leaves {len(shapes)} tensors, not one"
        return tuple(shapes[0])

    def to_hf(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        for step in self.steps:
            tensors = step.to_hf(tensors)
        return tensors[0]

    def from_hf(self, tensor: torch.Tensor, shapes: Shapes) -> list[torch.Tensor]:
        taken = []  # the shapes each step takes on the way out, undone from the last step back
        for step in self.steps:
            taken.append(shapes)
            shapes = step.shapes(shapes)
        tensors = [tensor]
        for step, step_shapes in zip(reversed(self.steps), reversed(taken), strict=True):
            tensors = step.from_hf(tensors, step_shapes)
        return tensors


def to_entries(items: list[tuple], ours_prefix: str = "", theirs_prefix: str = "") -> list[Entry]:
    """A row's items, (ours, theirs, *steps) with ours one name or a tuple of names, as `Entry`s with the
    prefixes put in front of the names."""
    out = []
    for ours, theirs, *steps in items:
        ours = (ours,) if isinstance(ours, str) else ours
        out.append(Entry(tuple(ours_prefix + o for o in ours), theirs_prefix + theirs, tuple(steps)))
    return out


def _params(modules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(our module, their module) -> the weight and bias pairs of each."""
    return [(f"{o}.{w}" if o else w, f"{t}.{w}") for o, t in modules for w in ("weight", "bias")]


# (our name, Hugging Face name). Encoder names get the family's prefix ("bert.", "albert.", "roberta.",
# "electra.", "distilbert.") in checkpoints that carry heads and none in a bare BertModel & co.
_EMBEDDINGS = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    *_params([("embeddings.norm", "embeddings.LayerNorm")]),
]
# Each layer's modules: ours, BERT's (RoBERTa's, ELECTRA's), ALBERT's one shared layer (group 0, layer 0).
_LAYER = [
    ("attn.query", "attention.self.query", "attention.query"),
    ("attn.key", "attention.self.key", "attention.key"),
    ("attn.value", "attention.self.value", "attention.value"),
    ("attn.out", "attention.output.dense", "attention.dense"),
    ("attn_norm", "attention.output.LayerNorm", "attention.LayerNorm"),
    ("ffn.up", "intermediate.dense", "ffn"),
    ("ffn.down", "output.dense", "ffn_output"),
    ("ffn_norm", "output.LayerNorm", "full_layer_layer_norm"),
]
LAYER_MAP = _params([(ours, bert) for ours, bert, _ in _LAYER])
ALBERT_LAYER_MAP = _params([(ours, albert) for ours, _, albert in _LAYER])
CLASSIFIER = _params([("out", "classifier")])
_FIRST_TOKEN_CLASSIFIER = _params([("dense", "classifier.dense"), ("out", "classifier.out_proj")])
_QA = _params([("", "qa_outputs")])


def _mlm(prefix: str, norm: str, bias: str) -> list[tuple[str, str]]:
    return [*_params([("dense", f"{prefix}dense"), ("norm", f"{prefix}{norm}")]), ("bias", bias)]


@dataclass(frozen=True)
class FamilyMap:
    """How one `model_type` names its tensors and architectures in a Hugging Face folder."""

    prefix: str  # the encoder's prefix in checkpoints with heads
    arch: str  # "Bert" -> BertModel, BertForMaskedLM, ...
    encoder: list  # the encoder's tensors outside its layers and pooler: embeddings, E -> H projection, ...
    layer: str  # the HF name of layer {i}'s block
    layer_map: list
    pooler: list
    heads: dict[str, list]
    redundant: frozenset[str]  # tensors read and not loaded (buffers, tied copies checked equal)
    tied: tuple[tuple[str, str], ...] = field(default=())  # (copy, original) pairs that must be equal
    redundant_pattern: str | None = None  # a regular expression for more of them (per-layer buffers)
    # Heads with no tensors of their own (GPT-2's lm_head, tied to wte): found in a file by this tensor (the tied
    # copy) or by config.json's architecture.
    head_marks: dict[str, str] = field(default_factory=dict)
    # Architecture names other than arch + ARCHITECTURE_SUFFIX (GPT-2's multiple choice: GPT2DoubleHeadsModel).
    arch_names: dict[frozenset[str], str] = field(default_factory=dict)


FAMILIES = {
    "bert": FamilyMap(
        prefix="bert.",
        arch="Bert",
        encoder=_EMBEDDINGS,
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=_params([("pooler", "pooler.dense")]),
        heads={
            "mlm": _mlm("cls.predictions.transform.", "LayerNorm", "cls.predictions.bias"),
            "nsp": _params([("", "cls.seq_relationship")]),
            "classifier": CLASSIFIER,
            # Per-token tagging and multiple choice (one score per choice, Linear(H, 1)) have the same tensor
            # names as sequence classification: only config.json's `architectures` tells them apart.
            "token_classifier": CLASSIFIER,
            "multiple_choice": CLASSIFIER,
            "qa": _QA,
        },
        redundant=frozenset(
            {"embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        ),
        tied=(
            ("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
            ("cls.predictions.decoder.bias", "cls.predictions.bias"),
        ),
    ),
    "albert": FamilyMap(
        prefix="albert.",
        arch="Albert",
        encoder=_EMBEDDINGS + _params([("project", "encoder.embedding_hidden_mapping_in")]),
        layer="encoder.albert_layer_groups.0.albert_layers.0",
        layer_map=ALBERT_LAYER_MAP,
        pooler=_params([("pooler", "pooler")]),
        heads={
            "mlm": _mlm("predictions.", "LayerNorm", "predictions.bias"),
            "nsp": _params([("", "sop_classifier.classifier")]),
            "classifier": CLASSIFIER,
            "token_classifier": CLASSIFIER,
            "multiple_choice": CLASSIFIER,
            "qa": _QA,
        },
        redundant=frozenset({"embeddings.position_ids", "predictions.decoder.weight", "predictions.decoder.bias"}),
        tied=(
            ("predictions.decoder.weight", "embeddings.word_embeddings.weight"),
            ("predictions.decoder.bias", "predictions.bias"),
        ),
    ),
    "roberta": FamilyMap(
        prefix="roberta.",
        arch="Roberta",
        encoder=_EMBEDDINGS,
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=_params([("pooler", "pooler.dense")]),
        heads={
            "mlm": _mlm("lm_head.", "layer_norm", "lm_head.bias"),
            "classifier": _FIRST_TOKEN_CLASSIFIER,
            "token_classifier": CLASSIFIER,
            "multiple_choice": CLASSIFIER,
            "qa": _QA,
        },
        redundant=frozenset(
            {"embeddings.position_ids", "embeddings.token_type_ids", "lm_head.decoder.weight", "lm_head.decoder.bias"}
        ),
        tied=(
            ("lm_head.decoder.weight", "embeddings.word_embeddings.weight"),
            ("lm_head.decoder.bias", "lm_head.bias"),
        ),
    ),
    "electra": FamilyMap(
        prefix="electra.",
        arch="Electra",
        encoder=_EMBEDDINGS + _params([("project", "embeddings_project")]),
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=[],  # ELECTRA has none
        heads={
            "mlm": _mlm("generator_predictions.", "LayerNorm", "generator_lm_head.bias"),
            "rtd": _params(
                [
                    ("dense", "discriminator_predictions.dense"),
                    ("prediction", "discriminator_predictions.dense_prediction"),
                ]
            ),
            "classifier": _FIRST_TOKEN_CLASSIFIER,
            "token_classifier": CLASSIFIER,
            "qa": _QA,
        },
        redundant=frozenset({"embeddings.position_ids", "embeddings.token_type_ids", "generator_lm_head.weight"}),
        tied=(("generator_lm_head.weight", "embeddings.word_embeddings.weight"),),
    ),
}
# ERNIE (transformers' Ernie* classes): BERT's names under "ernie." plus the task-type table, which
# config.extra_embeddings holds as "task_type" when config.json says use_task_id.
FAMILIES["ernie"] = replace(
    FAMILIES["bert"],
    prefix="ernie.",
    arch="Ernie",
    encoder=_EMBEDDINGS + [("embeddings.extra_embeddings.task_type.weight", "embeddings.task_type_embeddings.weight")],
    redundant=FAMILIES["bert"].redundant | {"embeddings.token_type_ids"},
)
# DistilBERT (transformers' DistilBert* classes): BERT's post-LayerNorm layer under its own names, no token types,
# no pooler. Its heads sit at the top level (no "cls." / "lm_head."); the MLM decoder is `vocab_projector`, tied to
# the word embeddings. Sequence classification and multiple choice read the first token: pre_classifier -> ReLU ->
# classifier (to 1 for a choice), so the two share names and config.json's `architectures` tells them apart.
_DISTILBERT_LAYER = [
    ("attn.query", "attention.q_lin"),
    ("attn.key", "attention.k_lin"),
    ("attn.value", "attention.v_lin"),
    ("attn.out", "attention.out_lin"),
    ("attn_norm", "sa_layer_norm"),
    ("ffn.up", "ffn.lin1"),
    ("ffn.down", "ffn.lin2"),
    ("ffn_norm", "output_layer_norm"),
]
_PRE_CLASSIFIER = _params([("dense", "pre_classifier"), ("out", "classifier")])
_VOCAB = [*_params([("dense", "vocab_transform"), ("norm", "vocab_layer_norm")]), ("bias", "vocab_projector.bias")]
FAMILIES["distilbert"] = FamilyMap(
    prefix="distilbert.",
    arch="DistilBert",
    encoder=[e for e in _EMBEDDINGS if "token_type" not in e[0]],
    layer="transformer.layer.{i}",
    layer_map=_params(_DISTILBERT_LAYER),
    pooler=[],
    heads={
        "mlm": _VOCAB,
        "classifier": _PRE_CLASSIFIER,
        "token_classifier": CLASSIFIER,
        "multiple_choice": _PRE_CLASSIFIER,
        "qa": _QA,
    },
    redundant=frozenset({"embeddings.position_ids", "vocab_projector.weight"}),
    tied=(("vocab_projector.weight", "embeddings.word_embeddings.weight"),),
)
# GPT-2 (transformers' GPT2* classes): Conv1D weights stored (in, out), so every linear weight is transposed, and
# Q, K and V fused into one c_attn (ours concatenated along the output rows, then transposed). The language-model
# head has no tensors of its own: lm_head.weight is wte.weight (checked equal when a file has both). Older files
# carry each layer's causal-mask buffers (h.{i}.attn.bias, h.{i}.attn.masked_bias): read and not used.
_QKV = ("attn.query", "attn.key", "attn.value")
FAMILIES["gpt2"] = FamilyMap(
    prefix="transformer.",
    arch="GPT2",
    encoder=[
        ("embeddings.word_embeddings.weight", "wte.weight"),
        ("embeddings.position_embeddings.weight", "wpe.weight"),
        *_params([("final_norm", "ln_f")]),
    ],
    layer="h.{i}",
    layer_map=[
        *_params([("attn_norm", "ln_1"), ("ffn_norm", "ln_2")]),
        (tuple(f"{m}.weight" for m in _QKV), "attn.c_attn.weight", Fuse(0), TRANSPOSE),
        (tuple(f"{m}.bias" for m in _QKV), "attn.c_attn.bias", Fuse(0)),
        ("attn.out.weight", "attn.c_proj.weight", TRANSPOSE),
        ("attn.out.bias", "attn.c_proj.bias"),
        ("ffn.up.weight", "mlp.c_fc.weight", TRANSPOSE),
        ("ffn.up.bias", "mlp.c_fc.bias"),
        ("ffn.down.weight", "mlp.c_proj.weight", TRANSPOSE),
        ("ffn.down.bias", "mlp.c_proj.bias"),
    ],
    pooler=[],
    heads={
        "lm": [],
        "classifier": [("out.weight", "score.weight")],
        "token_classifier": CLASSIFIER,
        "qa": _QA,
        "multiple_choice": _params([("out", "multiple_choice_head.summary")]),
    },
    redundant=frozenset({"lm_head.weight"}),
    tied=(("lm_head.weight", "wte.weight"),),
    redundant_pattern=r"h\.\d+\.attn\.(masked_)?bias",
    head_marks={"lm": "lm_head.weight"},
    # GPT-1's multiple choice: the LM head (tied, no tensors) and a choice head on each choice's last token
    arch_names={frozenset({"multiple_choice"}): "GPT2DoubleHeadsModel"},
)
# The architecture name (after the family's "Bert" / "Albert" / ...) by the set of heads saved: pretraining
# saves {mlm, nsp}, {mlm} or {rtd} (ELECTRA's generator {mlm}), fine-tuning one task head. Any other set is
# refused: transformers has no class that holds it, and a guessed one would load with heads dropped.
ARCHITECTURE_SUFFIX = {
    frozenset(): "Model",
    frozenset({"mlm"}): "ForMaskedLM",
    frozenset({"lm"}): "LMHeadModel",
    frozenset({"mlm", "nsp"}): "ForPreTraining",
    frozenset({"nsp"}): "ForNextSentencePrediction",
    frozenset({"rtd"}): "ForPreTraining",
    frozenset({"classifier"}): "ForSequenceClassification",
    frozenset({"token_classifier"}): "ForTokenClassification",
    frozenset({"multiple_choice"}): "ForMultipleChoice",
    frozenset({"qa"}): "ForQuestionAnswering",
}
# The heads stored under the sequence classifier's names (`classifier.*`; DistilBERT's `pre_classifier.*` +
# `classifier.*`) by config.json's architecture name.
CLASSIFIER_SUFFIXES = {"ForTokenClassification": "token_classifier", "ForMultipleChoice": "multiple_choice"}
