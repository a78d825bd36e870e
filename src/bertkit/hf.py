"""Hugging Face folders (`config.json`, `model.safetensors` or `pytorch_model.bin`, `vocab.txt` / `tokenizer.json`)
in and out, through one explicit name map per family used in both directions: `load_pretrained` reads what
`transformers` (or Google's converted checkpoints) wrote, heads included; `save_pretrained` writes what
`transformers` loads with identical outputs (AutoModel, BertForPreTraining, AutoModelForMaskedLM and the
AutoModelFor... class of each fine-tuning head).

Choices:
- A family's row (`FAMILIES`, a `FamilyMap`) lists every tensor the family may hold; the model built from the
  config decides which it has (no pooler, no token-type table when `type_vocab_size` is 0). An entry for a
  tensor the model lacks is left out (that tensor in a file is then "unexpected"); a model tensor no entry
  names is an error both ways, so a model the family's `transformers` classes cannot hold is refused.
- The rows and the transforms an entry may carry (`TRANSPOSE`, `Fuse(dim)`, `Stack()`) live in hf_maps.py;
  this module only walks them.
- Every tensor is accounted for: one the map does not know, one the file lacks, a shape that does not fit, a
  non-finite or integer value is a `CheckpointError` naming it; only each family's `redundant` tensors (buffers,
  tied copies checked equal first) are read and not used. A transposed square matrix passes every shape check:
  only a parity test catches it (tests/test_name_map.py shows one).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.hf_maps import (  # noqa: F401 - the rows and transforms, importable from here as before
    ARCHITECTURE_SUFFIX,
    CLASSIFIER,
    CLASSIFIER_SUFFIXES,
    FAMILIES,
    LAYER_MAP,
    TRANSPOSE,
    Entry,
    FamilyMap,
    Fuse,
    Stack,
    Transpose,
    to_entries,
)
from bertkit.model import (
    BertEncoder,
    ClassifierHead,
    FirstTokenClassifierHead,
    LastTokenChoiceHead,
    LastTokenClassifierHead,
    LMHead,
    MLMHead,
    NSPHead,
    RTDHead,
    span_head,
)


def family(config: BertConfig) -> FamilyMap:
    if config.model_type not in FAMILIES:
        raise ConfigError(f"model_type {config.model_type!r} has no name map; add its row to bertkit.hf.FAMILIES")
    return FAMILIES[config.model_type]


def architecture(config: BertConfig, heads: list[str]) -> str:
    """config.json's `architectures` entry for an encoder with these heads: "BertForPreTraining", ..."""
    if frozenset(heads) in family(config).arch_names:
        return family(config).arch_names[frozenset(heads)]
    suffix = ARCHITECTURE_SUFFIX.get(frozenset(heads))
    if suffix is None:
        sets = "; ".join("{" + ", ".join(sorted(s)) + "}" for s in ARCHITECTURE_SUFFIX)
        raise CheckpointError(
            f"no transformers class holds the heads {{{', '.join(sorted(heads))}}} together; save one of: {sets}"
        )
    return family(config).arch + suffix


def name_map(modules: dict[str, nn.Module]) -> list[Entry]:
    """The entries for every tensor of `modules` ({"encoder": BertEncoder, head name: head}): encoder names
    without the family's prefix. A model tensor no entry names is a `CheckpointError` (module docstring)."""
    encoder = modules["encoder"]
    config = encoder.config
    fam = family(config)
    items = to_entries(fam.encoder + fam.pooler, "encoder.")
    for i in range(len(encoder.layers)):
        items += to_entries(fam.layer_map, f"encoder.layers.{i}.", fam.layer.format(i=i) + ".")
    for head in [h for h in modules if h != "encoder"]:
        if head not in fam.heads:
            raise ConfigError(f"{config.family.name} models have no '{head}' head in transformers")
        items += to_entries(fam.heads[head], f"{head}.")
    params = _flat_state(modules)
    entries = [e for e in items if all(o in params for o in e.ours)]
    leftover = set(params) - {o for e in entries for o in e.ours}
    if leftover:  # a tensor we do not know how to name: refuse rather than drop it
        raise CheckpointError(
            f"no Hugging Face name for {_short(sorted(leftover))} in the {config.family.name} name map; "
            f"transformers' {config.family.name} classes cannot hold this model"
        )
    return entries


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
    first_token = config.family.classifier_reads_first_token  # no pooler: a two-layer head on <s> / [CLS]
    classifier = FirstTokenClassifierHead if first_token else ClassifierHead
    if config.family.classifier_reads_last_token:  # GPT-2: on the last token
        classifier = LastTokenClassifierHead
    choice_head = FirstTokenClassifierHead if config.family.choice_reads_first_token else ClassifierHead
    if config.family.classifier_reads_last_token:  # GPT-2's multiple choice: each choice's last token
        choice_head = LastTokenChoiceHead
    factories = {
        "mlm": MLMHead,
        "lm": lambda c: LMHead(),
        "nsp": NSPHead,
        "rtd": RTDHead,
        "classifier": classifier,
        "token_classifier": ClassifierHead,
        "multiple_choice": lambda c: choice_head(c, num_labels=1),
        "qa": span_head,
    }
    unknown = [h for h in heads if h not in factories]
    if unknown:
        raise ConfigError(f"unknown head(s) {unknown}; known: {', '.join(factories)}")
    if ("classifier" in heads or "token_classifier" in heads) and config.num_labels == 0:
        raise ConfigError("a classifier head needs labels: set 'id2label' in the config")
    missing = [h for h in heads if h not in family(config).heads]
    if missing:
        raise ConfigError(f"{config.family.name} models have no {', '.join(missing)} head in transformers")
    return {h: factories[h](config) for h in heads}


def _heads_in(state: dict[str, torch.Tensor], architectures: list[str], fam: FamilyMap) -> list[str]:
    """The heads whose tensors are in `state`; a head only partly there is kept, so its missing tensors are named.
    Names shared between heads: a head whose names lie inside a complete head's, or one partly there that shares
    names with a complete one, is that head (DistilBERT's token classifier `classifier.*` and its sequence
    classifier `pre_classifier.*` + `classifier.*`); heads stored under the same names (BERT's `classifier.*`:
    sequence, token classifier and multiple choice) are told apart by config.json's `architectures`
    (`CLASSIFIER_SUFFIXES`), the sequence classifier when it names none."""
    names = {h: {e.theirs for e in to_entries(m)} for h, m in fam.heads.items() if m}
    complete = [h for h in names if names[h] <= state.keys()]
    found = [h for h in names if names[h] & state.keys()]
    inside = {h for h in found for c in complete if names[h] < names[c] or h not in complete and names[h] & names[c]}
    found = [h for h in found if h not in inside]
    named = [CLASSIFIER_SUFFIXES.get(a[len(fam.arch) :]) for a in architectures if a.startswith(fam.arch)]
    for head in list(found):
        same = [h for h in found if names[h] == names[head]]
        if len(same) > 1:
            chosen = next((h for h in named if h in same), "classifier" if "classifier" in same else same[0])
            found = [h for h in found if h not in same or h == chosen]
    for head, mark in fam.head_marks.items():  # a head with no tensors of its own (GPT-2's tied lm_head)
        if mark in state or fam.arch + ARCHITECTURE_SUFFIX[frozenset({head})] in architectures:
            found.append(head)
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


def save_side_tensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A head that is not a transformers head (the CRF, SpanBERT's SBO head) saved beside the weights as one
    safetensors file, written to a temporary name and renamed: a crash never leaves half a file. The metadata is
    one JSON string with sorted keys: safetensors writes a metadata map in hash order, so two keys would make the
    same weights give different bytes from run to run."""
    import json

    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"bertkit": json.dumps({"format": "pt", **(metadata or {})}, sort_keys=True)})
    tmp.replace(path)


def load_side_module(module: nn.Module, path: Path, why: str) -> None:
    """A side file read into `module`, whose state-dict names it must hold exactly (`load_side_tensors`); a tensor
    of another shape is a CheckpointError naming it, with `why` (what sizes the head)."""
    ours = module.state_dict()
    state = load_side_tensors(path, list(ours))
    for name, x in state.items():
        if x.shape != ours[name].shape:
            raise CheckpointError(
                f"{path}: tensor '{name}' has shape {tuple(x.shape)}, the head {tuple(ours[name].shape)} ({why})"
            )
    module.load_state_dict(state)


def load_side_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """Such a file read back: exactly `names`, floating point and finite, or a CheckpointError naming what is
    wrong. The caller checks the shapes, whose message knows what sizes them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None
    if set(state) != set(names):
        raise CheckpointError(f"{path}: expected tensors {', '.join(names)}, found {', '.join(sorted(state))}")
    check_values(state, list(names), path)
    return state


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
    pooler = any(e.theirs in state for e in to_entries(fam.pooler))
    ckpt = Checkpoint(config, BertEncoder(config, add_pooler=pooler), build_heads(config, heads))
    _load_into(ckpt, state, source)
    for module in ckpt.modules().values():
        module.eval()  # as transformers' from_pretrained: dropout off until a training loop says train()
    if tokenizer:
        ckpt.tokenizer = _load_tokenizer(folder, config)
    return ckpt


def _load_into(ckpt: Checkpoint, state: dict[str, torch.Tensor], source: Path) -> None:
    entries = name_map(ckpt.modules())
    fam = family(ckpt.config)
    ours = _flat_state(ckpt.modules())
    missing = [e.theirs for e in entries if e.theirs not in state]
    known = {e.theirs for e in entries}
    unexpected = [k for k in state if k not in known and not _redundant(k, fam)]
    if missing or unexpected:
        found = {"missing": missing, "unexpected": unexpected}
        parts = [f"{kind} tensors {_short(names)}" for kind, names in found.items() if names]
        name = ckpt.config.family.name
        what = f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"
        raise CheckpointError(f"{source}: " + "; ".join(parts) + f" (config.json says this is {what} checkpoint)")
    shapes = {e.theirs: [tuple(ours[o].shape) for o in e.ours] for e in entries}
    for e in entries:
        implied = e.hf_shape(shapes[e.theirs])
        if tuple(state[e.theirs].shape) != implied:
            raise CheckpointError(
                f"{source}: tensor '{e.theirs}' has shape {tuple(state[e.theirs].shape)} but config.json "
                f"implies {implied}"
            )
    check_values(state, [e.theirs for e in entries], source)
    _check_tied(state, source, fam)
    with torch.no_grad():
        for e in entries:
            for o, tensor in zip(e.ours, e.from_hf(state[e.theirs], shapes[e.theirs]), strict=True):
                ours[o].copy_(tensor)


def _redundant(name: str, fam: FamilyMap) -> bool:
    return name in fam.redundant or bool(fam.redundant_pattern and re.fullmatch(fam.redundant_pattern, name))


def _flat_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """{"encoder": m, "mlm": h} -> {"encoder.layers.0...": tensor, "mlm.dense.weight": tensor}."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def _check_tied(state: dict[str, torch.Tensor], source: Path, fam: FamilyMap) -> None:
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
    if config.family.positions_after_pad and tokenizer.pad_token_id != config.pad_token_id:
        # RoBERTa numbers positions from the padding id: a mismatch would shift every position silently.
        raise CheckpointError(
            f"{where}: config.json has pad_token_id={config.pad_token_id} but the tokenizer pads with id "
            f"{tokenizer.pad_token_id}; {config.family.name}'s positions are counted from the padding id, so they "
            "must agree"
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
    prefix = family(config).prefix if heads else ""
    arch = architecture(config, list(heads))
    modules = {"encoder": encoder, **heads}
    params = _flat_state(modules)
    state = {}
    for e in name_map(modules):
        name = (prefix if e.ours[0].startswith("encoder.") else "") + e.theirs
        state[name] = e.to_hf([params[o].detach().to("cpu") for o in e.ours]).contiguous()

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
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
