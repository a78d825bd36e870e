"""Hugging Face BERT folders in and out, through one explicit name map used in both directions.

A folder is `config.json` + `model.safetensors` (or `pytorch_model.bin`) + `vocab.txt` / `tokenizer.json`.
`load_pretrained` reads one that `transformers` (or Google's converted checkpoints) wrote, with the MLM, NSP
and classification heads when present; `save_pretrained` writes one that `transformers` loads with
identical outputs (AutoModel, AutoModelForMaskedLM, BertForPreTraining, AutoModelForSequenceClassification,
AutoModelForTokenClassification, AutoModelForQuestionAnswering, AutoModelForMultipleChoice).

Every tensor is accounted for: a tensor the map does not know, a tensor the model needs but the file lacks,
or a shape that does not fit is a `CheckpointError` naming it. The only tensors read and not used are
the ones each family's `redundant` set lists (buffers and tied copies), and tied copies are checked to be equal first.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bertkit.config import FAMILY_NAMES, BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.model import BertEncoder, ClassifierHead, FirstTokenClassifierHead, MLMHead, NSPHead, RTDHead, span_head

# (our name, Hugging Face name); "{i}" is a layer index. Encoder names get the family's prefix ("bert.",
# "albert.", "roberta.", "electra.") in checkpoints that carry heads and none in a bare BertModel & co.
ENCODER_MAP = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.norm.weight", "embeddings.LayerNorm.weight"),
    ("embeddings.norm.bias", "embeddings.LayerNorm.bias"),
]
LAYER_MAP = [
    ("attn.query", "attention.self.query"),
    ("attn.key", "attention.self.key"),
    ("attn.value", "attention.self.value"),
    ("attn.out", "attention.output.dense"),
    ("attn_norm", "attention.output.LayerNorm"),
    ("ffn.up", "intermediate.dense"),
    ("ffn.down", "output.dense"),
    ("ffn_norm", "output.LayerNorm"),
]
# ALBERT's one shared layer (AlbertModel: group 0, layer 0 of that group).
ALBERT_LAYER_MAP = [
    ("attn.query", "attention.query"),
    ("attn.key", "attention.key"),
    ("attn.value", "attention.value"),
    ("attn.out", "attention.dense"),
    ("attn_norm", "attention.LayerNorm"),
    ("ffn.up", "ffn"),
    ("ffn.down", "ffn_output"),
    ("ffn_norm", "full_layer_layer_norm"),
]
_CLASSIFIER = [("out.weight", "classifier.weight"), ("out.bias", "classifier.bias")]
_FIRST_TOKEN_CLASSIFIER = [
    ("dense.weight", "classifier.dense.weight"),
    ("dense.bias", "classifier.dense.bias"),
    ("out.weight", "classifier.out_proj.weight"),
    ("out.bias", "classifier.out_proj.bias"),
]


def _mlm(prefix: str, norm: str, bias: str) -> list[tuple[str, str]]:
    return [
        ("dense.weight", f"{prefix}dense.weight"),
        ("dense.bias", f"{prefix}dense.bias"),
        ("norm.weight", f"{prefix}{norm}.weight"),
        ("norm.bias", f"{prefix}{norm}.bias"),
        ("bias", bias),
    ]


@dataclass(frozen=True)
class Family:
    """How one `model_type` names its tensors and architectures in a Hugging Face folder."""

    prefix: str  # the encoder's prefix in checkpoints with heads
    arch: str  # "Bert" -> BertModel, BertForMaskedLM, ...
    layer: str  # the HF name of layer {i}'s block
    layer_map: list[tuple[str, str]]
    pooler: list[tuple[str, str]]
    project: str | None  # the HF name of the E -> H projection
    heads: dict[str, list[tuple[str, str]]]
    redundant: frozenset[str]  # tensors read and not loaded (buffers, tied copies checked equal)
    tied: tuple[tuple[str, str], ...]  # (copy, original) pairs that must be equal


FAMILIES = {
    "bert": Family(
        prefix="bert.",
        arch="Bert",
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=[("pooler.weight", "pooler.dense.weight"), ("pooler.bias", "pooler.dense.bias")],
        project=None,
        heads={
            "mlm": _mlm("cls.predictions.transform.", "LayerNorm", "cls.predictions.bias"),
            "nsp": [("weight", "cls.seq_relationship.weight"), ("bias", "cls.seq_relationship.bias")],
            "classifier": _CLASSIFIER,
            # Per-token tagging and multiple choice (one score per choice, Linear(H, 1)) have the same tensor
            # names as sequence classification: only config.json's `architectures` tells them apart.
            "token_classifier": _CLASSIFIER,
            "multiple_choice": _CLASSIFIER,
            "qa": [("weight", "qa_outputs.weight"), ("bias", "qa_outputs.bias")],
        },
        redundant=frozenset(
            {"embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        ),
        tied=(
            ("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
            ("cls.predictions.decoder.bias", "cls.predictions.bias"),
        ),
    ),
    "albert": Family(
        prefix="albert.",
        arch="Albert",
        layer="encoder.albert_layer_groups.0.albert_layers.0",
        layer_map=ALBERT_LAYER_MAP,
        pooler=[("pooler.weight", "pooler.weight"), ("pooler.bias", "pooler.bias")],
        project="encoder.embedding_hidden_mapping_in",
        heads={
            "mlm": _mlm("predictions.", "LayerNorm", "predictions.bias"),
            "nsp": [("weight", "sop_classifier.classifier.weight"), ("bias", "sop_classifier.classifier.bias")],
            "classifier": _CLASSIFIER,
            "token_classifier": _CLASSIFIER,
            "multiple_choice": _CLASSIFIER,
            "qa": [("weight", "qa_outputs.weight"), ("bias", "qa_outputs.bias")],
        },
        redundant=frozenset({"embeddings.position_ids", "predictions.decoder.weight", "predictions.decoder.bias"}),
        tied=(
            ("predictions.decoder.weight", "embeddings.word_embeddings.weight"),
            ("predictions.decoder.bias", "predictions.bias"),
        ),
    ),
    "roberta": Family(
        prefix="roberta.",
        arch="Roberta",
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=[("pooler.weight", "pooler.dense.weight"), ("pooler.bias", "pooler.dense.bias")],
        project=None,
        heads={
            "mlm": _mlm("lm_head.", "layer_norm", "lm_head.bias"),
            "classifier": _FIRST_TOKEN_CLASSIFIER,
            "token_classifier": _CLASSIFIER,
            "multiple_choice": _CLASSIFIER,
            "qa": [("weight", "qa_outputs.weight"), ("bias", "qa_outputs.bias")],
        },
        redundant=frozenset(
            {"embeddings.position_ids", "embeddings.token_type_ids", "lm_head.decoder.weight", "lm_head.decoder.bias"}
        ),
        tied=(
            ("lm_head.decoder.weight", "embeddings.word_embeddings.weight"),
            ("lm_head.decoder.bias", "lm_head.bias"),
        ),
    ),
    "electra": Family(
        prefix="electra.",
        arch="Electra",
        layer="encoder.layer.{i}",
        layer_map=LAYER_MAP,
        pooler=[],  # ELECTRA has none
        project="embeddings_project",
        heads={
            "mlm": _mlm("generator_predictions.", "LayerNorm", "generator_lm_head.bias"),
            "rtd": [
                ("dense.weight", "discriminator_predictions.dense.weight"),
                ("dense.bias", "discriminator_predictions.dense.bias"),
                ("prediction.weight", "discriminator_predictions.dense_prediction.weight"),
                ("prediction.bias", "discriminator_predictions.dense_prediction.bias"),
            ],
            "classifier": _FIRST_TOKEN_CLASSIFIER,
            "token_classifier": _CLASSIFIER,
            "qa": [("weight", "qa_outputs.weight"), ("bias", "qa_outputs.bias")],
        },
        redundant=frozenset({"embeddings.position_ids", "embeddings.token_type_ids", "generator_lm_head.weight"}),
        tied=(("generator_lm_head.weight", "embeddings.word_embeddings.weight"),),
    ),
}
# The architecture name (after the family's "Bert" / "Albert" / ...) by the set of heads present.
ARCHITECTURE_SUFFIX = {
    frozenset(): "Model",
    frozenset({"mlm"}): "ForMaskedLM",
    frozenset({"mlm", "nsp"}): "ForPreTraining",
    frozenset({"nsp"}): "ForNextSentencePrediction",
    frozenset({"rtd"}): "ForPreTraining",
    frozenset({"classifier"}): "ForSequenceClassification",
    frozenset({"token_classifier"}): "ForTokenClassification",
    frozenset({"multiple_choice"}): "ForMultipleChoice",
    frozenset({"qa"}): "ForQuestionAnswering",
}
# The heads stored as `classifier.*` other than the sequence classifier, by config.json's architecture name.
CLASSIFIER_SUFFIXES = {"ForTokenClassification": "token_classifier", "ForMultipleChoice": "multiple_choice"}


def family(config: BertConfig) -> Family:
    return FAMILIES[config.model_type]


def name_map(config: BertConfig, heads: list[str], pooler: bool) -> dict[str, str]:
    """Our parameter names -> Hugging Face names (encoder names without the family's prefix)."""
    fam = family(config)
    pairs = list(ENCODER_MAP)
    if config.projects_embeddings:
        pairs += [(f"project.{w}", f"{fam.project}.{w}") for w in ("weight", "bias")]
    for i in range(1 if config.shares_layers else config.num_hidden_layers):
        for ours, theirs in fam.layer_map:
            for w in ("weight", "bias"):
                pairs.append((f"layers.{i}.{ours}.{w}", f"{fam.layer.format(i=i)}.{theirs}.{w}"))
    if pooler:
        pairs += fam.pooler
    names = {f"encoder.{ours}": theirs for ours, theirs in pairs}
    for head in heads:
        if head not in fam.heads:
            raise ConfigError(f"{FAMILY_NAMES[config.model_type]} models have no '{head}' head in transformers")
        names.update({f"{head}.{k}": v for k, v in fam.heads[head]})
    return names


@dataclass
class Checkpoint:
    """What a model folder holds: the config, the encoder, its heads, and the tokenizer (if any)."""

    config: BertConfig
    encoder: BertEncoder
    heads: dict[str, nn.Module] = field(default_factory=dict)
    tokenizer: object | None = None  # bertkit.tokenizer.Tokenizer

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, **self.heads}


def build_heads(config: BertConfig, heads: list[str]) -> dict[str, nn.Module]:
    first_token = config.model_type in ("roberta", "electra")  # no pooler: a two-layer head on <s> / [CLS]
    factories = {
        "mlm": MLMHead,
        "nsp": NSPHead,
        "rtd": RTDHead,
        "classifier": FirstTokenClassifierHead if first_token else ClassifierHead,
        "token_classifier": ClassifierHead,
        "multiple_choice": lambda c: ClassifierHead(c, num_labels=1),
        "qa": span_head,
    }
    unknown = [h for h in heads if h not in factories]
    if unknown:
        raise ConfigError(f"unknown head(s) {unknown}; known: {', '.join(factories)}")
    if ("classifier" in heads or "token_classifier" in heads) and config.num_labels == 0:
        raise ConfigError("a classifier head needs labels: set 'id2label' in the config")
    missing = [h for h in heads if h not in family(config).heads]
    if missing:
        raise ConfigError(f"{FAMILY_NAMES[config.model_type]} models have no {', '.join(missing)} head in transformers")
    return {h: factories[h](config) for h in heads}


def _heads_in(state: dict[str, torch.Tensor], architectures: list[str], fam: Family) -> list[str]:
    """The heads whose tensors are in `state`. `classifier.*` is a sequence classifier unless config.json's
    `architectures` names a token classifier or multiple choice (`CLASSIFIER_SUFFIXES`); for RoBERTa and
    ELECTRA, whose sequence classifier is `classifier.dense` + `classifier.out_proj`, the names alone decide."""
    found = [h for h, m in fam.heads.items() if any(theirs in state for _, theirs in m)]
    same_names = [h for h in found if fam.heads[h] == _CLASSIFIER]  # heads stored as classifier.weight / .bias
    if len(same_names) > 1:
        named = [CLASSIFIER_SUFFIXES.get(a[len(fam.arch) :]) for a in architectures if a.startswith(fam.arch)]
        named = [h for h in named if h in same_names]
        chosen = named[0] if named else ("classifier" if "classifier" in same_names else same_names[0])
        found = [h for h in found if h not in same_names or h == chosen]
    return found


def _architectures(folder: Path) -> list[str]:
    archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    return [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st)), st
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{st}: cannot read safetensors file ({e})") from None
    if pt.is_file():
        try:
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt pickle
            raise CheckpointError(
                f"{pt}: cannot read PyTorch weights ({_load_failure(e)}); is it a whole torch.save file of tensors?"
            ) from None
        return _tensors_only(state, pt), pt
    if (folder / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{folder}: sharded checkpoints are not supported yet; merge the shards first")
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _load_failure(e: Exception) -> str:
    """torch.load's reason on one line: its weights-only message spans paragraphs around one useful line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    marker = next((i for i, line in enumerate(lines) if "WeightsUnpickler error:" in line), None)
    if marker is not None:
        rest = lines[marker].split("WeightsUnpickler error:", 1)[1].strip()
        rest = rest or (lines[marker + 1] if marker + 1 < len(lines) else "")
        return f"the unpickler says: {rest}"[:200]
    return lines[0][:200]


def _tensors_only(state: object, source: Path) -> dict[str, torch.Tensor]:
    """A pytorch_model.bin must be a flat {name: tensor} dict; a training checkpoint nests one inside."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: holds a {type(state).__name__}, not a {{name: tensor}} state dict")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor; a model file is a flat "
                "{name: tensor} state dict (a training checkpoint? save its model's state_dict() instead)"
            )
    return state


def check_values(state: dict[str, torch.Tensor], names: list[str], source: Path) -> None:
    """Every tensor the model loads must be floating point and finite. Why: copy_ casts int64 to float without a
    word, and a NaN or inf weight (a run that diverged) makes every score NaN, printed as 0.000 downstream."""
    for name in names:
        t = state[name]
        if not t.is_floating_point():
            raise CheckpointError(
                f"{source}: tensor '{name}' has dtype {str(t.dtype).removeprefix('torch.')}; model weights are "
                "floating point (float32, float16 or bfloat16): the file holds something else, or a bad conversion"
            )
        if not torch.isfinite(t).all():
            raise CheckpointError(
                f"{source}: tensor '{name}' holds NaN or infinite values; the model is damaged (a run that diverged?)"
            )


def _normalise_hf_names(state: dict[str, torch.Tensor], prefix: str = "bert.") -> dict[str, torch.Tensor]:
    """Strip the family's prefix ("bert.", ...) and rename TF-era LayerNorm.gamma/beta, as old checkpoints have."""
    out = {}
    for name, tensor in state.items():
        if name.startswith(prefix):
            name = name[len(prefix) :]
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[name] = tensor
    return out


def load_pretrained(folder: str | os.PathLike, tokenizer: bool = True) -> Checkpoint:
    """Load a Hugging Face BERT folder: config, encoder, heads found in the file, tokenizer if present.

    Modules come back in eval mode (dropout off), as `transformers` does; training code calls `.train()`.
    """
    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(f"{folder} is a file; give the model folder that holds it (config.json and the weights)")
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such model folder")
    config = BertConfig.from_json(folder / "config.json")
    state, source = read_state_dict(folder)
    fam = family(config)
    state = _normalise_hf_names(state, fam.prefix)

    heads = _heads_in(state, _architectures(folder), fam)
    pooler = any(theirs in state for _, theirs in fam.pooler)
    ckpt = Checkpoint(config, BertEncoder(config, add_pooler=pooler), build_heads(config, heads))
    _load_into(ckpt, state, source, pooler)
    for module in ckpt.modules().values():
        module.eval()  # as transformers' from_pretrained: dropout off until a training loop says train()
    if tokenizer:
        ckpt.tokenizer = _load_tokenizer(folder, config)
    return ckpt


def _load_into(ckpt: Checkpoint, state: dict[str, torch.Tensor], source: Path, pooler: bool) -> None:
    names = name_map(ckpt.config, list(ckpt.heads), pooler)
    fam = family(ckpt.config)
    ours = _flat_state(ckpt.modules())
    missing = [theirs for our, theirs in names.items() if theirs not in state]
    unexpected = [k for k in state if k not in set(names.values()) and k not in fam.redundant]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors {_short(unexpected)}")
        what = {"bert": "a BERT", "albert": "an ALBERT", "roberta": "a RoBERTa", "electra": "an ELECTRA"}[
            ckpt.config.model_type
        ]
        raise CheckpointError(f"{source}: " + "; ".join(parts) + f" (config.json says this is {what} checkpoint)")
    for our, theirs in names.items():
        if state[theirs].shape != ours[our].shape:
            raise CheckpointError(
                f"{source}: tensor '{theirs}' has shape {tuple(state[theirs].shape)} but config.json "
                f"implies {tuple(ours[our].shape)}"
            )
    check_values(state, list(names.values()), source)
    _check_tied(state, source, fam)
    with torch.no_grad():
        for our, theirs in names.items():
            ours[our].copy_(state[theirs])


def _flat_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """{"encoder": m, "mlm": h} -> {"encoder.layers.0...": tensor, "mlm.dense.weight": tensor}."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def _check_tied(state: dict[str, torch.Tensor], source: Path, fam: Family) -> None:
    """A decoder stored next to the embeddings must be the same matrix: bertkit always ties them."""
    for copy, original in fam.tied:
        if copy in state and original in state and not torch.equal(state[copy], state[original]):
            raise CheckpointError(
                f"{source}: '{copy}' differs from '{original}'; untied MLM decoders are not supported"
            )


def _short(names: list[str], n: int = 5) -> str:
    shown = ", ".join(f"'{x}'" for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _load_tokenizer(folder: Path, config: BertConfig):
    from bertkit.vocab import has_tokenizer, tokenizer_from_folder

    if not has_tokenizer(folder):
        return None
    tok = tokenizer_from_folder(folder)
    check_vocab_fits(tok, config, folder)
    return tok


def check_vocab_fits(tokenizer, config: BertConfig, where: object = "model") -> None:
    if config.model_type == "roberta" and tokenizer.pad_token_id != config.pad_token_id:
        # RoBERTa numbers positions from the padding id: a mismatch would shift every position silently.
        raise CheckpointError(
            f"{where}: config.json has pad_token_id={config.pad_token_id} but the tokenizer pads with id "
            f"{tokenizer.pad_token_id}; RoBERTa's positions are counted from the padding id, so they must agree"
        )
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{where}: the vocabulary has {tokenizer.vocab_size} tokens but the model's embedding has "
            f"vocab_size={config.vocab_size}; ids past {config.vocab_size - 1} would have no embedding"
        )


def fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') writes to the disk, so a power cut cannot leave a renamed empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_pretrained(
    folder: str | os.PathLike,
    encoder: BertEncoder,
    heads: dict[str, nn.Module] | None = None,
    tokenizer=None,
) -> None:
    """Write a Hugging Face folder. Files go to a temporary folder first, then replace the target's files."""
    from safetensors.torch import save_file

    heads = heads or {}
    config = encoder.config
    if tokenizer is not None:
        check_vocab_fits(tokenizer, config)
    fam = family(config)
    prefix = fam.prefix if heads else ""
    names = name_map(config, list(heads), encoder.pooler is not None)
    params = _flat_state({"encoder": encoder, **heads})
    leftover = set(params) - set(names)
    if leftover:  # a module we do not know how to name: refuse rather than drop it
        raise CheckpointError(f"no Hugging Face name for {_short(sorted(leftover))}")
    state = {}
    for our, theirs in names.items():
        is_encoder = our.startswith("encoder.")
        state[(prefix if is_encoder else "") + theirs] = params[our].detach().to("cpu").contiguous()

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = fam.arch + ARCHITECTURE_SUFFIX.get(frozenset(heads), "ForPreTraining")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as tmp:
        tmp = Path(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save(tmp / "config.json", architectures=[arch])
        if tokenizer is not None:
            tokenizer.save(tmp)
        for f in tmp.iterdir():
            fsync(f)  # the bytes are on disk before the name points at them
        for f in tmp.iterdir():
            os.replace(f, folder / f.name)
    fsync(folder)
