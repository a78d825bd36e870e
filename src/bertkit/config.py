"""BertConfig: one small typed dataclass whose field names are Hugging Face's `config.json` keys.

Choices:
- Field names match `transformers.BertConfig`, so `config.json` maps 1:1 in both directions.
- An unknown key in a config.json is an error: it may change the model (a different position embedding,
  an ALBERT factorisation) and building the wrong model silently is the worst outcome. Keys that only
  describe the file (`architectures`, `transformers_version`, ...) or that Google's original configs carry
  without effect (`pooler_fc_size`, `directionality`, ...) are listed in `IGNORED_KEYS` and skipped.
- Presets are data: `PRESETS` names each model with the paper or release it comes from.
- One config for the family (STYLE: one encoder, small deltas): `model_type` ("bert", "albert", "roberta",
  "electra", "ernie", "distilbert", "gpt2") picks one row of `FAMILY_SPECS` (families.py, re-exported here;
  `config.family`, a `FamilySpec`); the code asks that row what the family has (a shared layer, a position offset,
  ...) and never which family it is. Which keys config.json may carry depends on the row (`FamilySpec.fields`,
  `key_renames`, `dropped_keys`, `fixed_keys`); each family's file is written with the keys its `transformers` class
  reads, under the names it reads them, and without the fields that class hard-codes (`fixed_fields`).
- Deltas no `transformers` class of today's families has are bertkit's own fields: `type_vocab_size = 0`
  (no token-type table; DistilBERT's fixed value), `norm_position` ("pre": GPT-2's layout) and `extra_embeddings`
  (tables added like token types; ERNIE's row writes its task table under ErnieConfig's keys). config.json
  carries `norm_position` / `extra_embeddings` only when they differ from the family row's default, so every file
  of today's families is written byte for byte as before and loads in `transformers` unchanged; a model whose
  family's `transformers` classes cannot hold such a delta is refused when saved as a Hugging Face folder (hf.py),
  never written as a file `transformers` would misread.
"""

from __future__ import annotations

import json
import os
import tempfile
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from bertkit.errors import ConfigError
from bertkit.families import FAMILY_FIELDS, FAMILY_NAMES, FAMILY_SPECS, FamilySpec  # noqa: F401 - importable here

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

# Keys Hugging Face or Google write into config.json that do not change the encoder we build.
IGNORED_KEYS = frozenset(
    {
        "_name_or_path",
        "architectures",
        "model_type",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "gradient_checkpointing",
        "use_cache",
        "is_decoder",
        "add_cross_attention",
        "chunk_size_feed_forward",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "problem_type",
        "tie_word_embeddings",
        "sep_token_id",
        "cls_token_id",
        "tokenizer_class",
        "finetuning_task",
        "directionality",
        "pooler_fc_size",
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
        "prefix",
        "task_specific_params",
        "torchscript",
    }
)
# Keys that are accepted only with the value the BERT encoder implements.
FIXED_KEYS = {"position_embedding_type": "absolute", "is_encoder_decoder": False}
# The keys that size the model: every config.json of the family has them, so one without them is another file.
ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
# bertkit's own fields: written to config.json only when they differ from the family row's default.
BERTKIT_FIELDS = ("norm_position", "extra_embeddings", "pair_orders")
PAIR_ORDERS = ("one", "both")
NORM_POSITIONS = ("post", "pre")


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0  # None (null): no padding token, for a family whose table has no padding row
    classifier_dropout: float | None = None
    # The ids that open and end a text, as the file gives them (a generating model's; BERT files rarely have
    # them); written back only when set.
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    model_type: str = "bert"
    embedding_size: int | None = None  # ALBERT / ELECTRA: width E of the embeddings; None = hidden_size
    num_hidden_groups: int = 1  # ALBERT's sharing layout; only 1 (all layers share one) is built
    inner_group_num: int = 1
    # Task heads: label names in id order (HF's id2label / label2id are derived from this).
    id2label: dict[int, str] = field(default_factory=dict)
    # bertkit's own (BERTKIT_FIELDS). "pre": LayerNorm before each sub-layer, a final LayerNorm after the last
    # layer and none on the embeddings (GPT-2's layout; the first layer's LayerNorm normalises them).
    norm_position: str = "post"
    # More embedding tables added like token types, {name: rows} (ERNIE 2.0's {"task_type": 3}).
    extra_embeddings: dict[str, int] = field(default_factory=dict)
    # A pair classifier's reading of (A, B): "both" scores A-then-B and B-then-A and adds the logits (GPT-1's
    # similarity transformation; with GPT-2's bias-free linear score that is adding the two representations).
    # transformers gives each order's logits: the sum of the two is this model's output.
    pair_orders: str = "one"

    def __post_init__(self) -> None:
        if self.model_type not in FAMILY_SPECS:
            raise ConfigError(
                f"config field 'model_type' is {self.model_type!r}; bertkit builds {', '.join(FAMILY_SPECS)}"
            )
        if self.embedding_size is not None:
            if "embedding_size" not in self.family.fields:
                having = " and ".join(s.name for s in FAMILY_SPECS.values() if "embedding_size" in s.fields)
                raise ConfigError(f"config field 'embedding_size' is for {having}, not {self.model_type}")
            if (
                not isinstance(self.embedding_size, int)
                or isinstance(self.embedding_size, bool)
                or self.embedding_size <= 0
            ):
                raise ConfigError(
                    f"config field 'embedding_size' must be a positive integer, got {self.embedding_size!r}"
                )
        for name in ("num_hidden_groups", "inner_group_num"):
            if getattr(self, name) != 1:
                raise ConfigError(
                    f"config field '{name}' is {getattr(self, name)!r}; bertkit builds ALBERT with one shared layer "
                    "(num_hidden_groups = inner_group_num = 1, as every released ALBERT)"
                )
        positive = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field '{name}' must be a positive integer, got {value!r}")
        value = self.type_vocab_size
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"config field 'type_vocab_size' must be 0 (no token types) or more, got {value!r}")
        if self.norm_position not in NORM_POSITIONS:
            raise ConfigError(
                f"config field 'norm_position' is {self.norm_position!r}; choose {' or '.join(NORM_POSITIONS)}"
            )
        self._check_extra_embeddings()
        if self.pair_orders not in PAIR_ORDERS:
            raise ConfigError(f"config field 'pair_orders' is {self.pair_orders!r}; choose {' or '.join(PAIR_ORDERS)}")
        for name, value in self.family.fixed_fields.items():
            if getattr(self, name) != value:
                raise ConfigError(
                    f"config field '{name}' is {getattr(self, name)!r}; {self.family.name} models have {value!r} "
                    "(its transformers classes hard-code it)"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"config field 'hidden_size' ({self.hidden_size}) must be divisible by "
                f"'num_attention_heads' ({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"config field 'hidden_act' is {self.hidden_act!r}; supported: {', '.join(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field '{name}' must be in [0, 1), got {getattr(self, name)!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and 0 < self.layer_norm_eps < 1):
            raise ConfigError(
                f"config field 'layer_norm_eps' must be a small positive number, got {self.layer_norm_eps!r}"
            )
        if not (isinstance(self.initializer_range, (int, float)) and 0 <= self.initializer_range < 10):
            raise ConfigError(
                f"config field 'initializer_range' must be a finite number >= 0, got {self.initializer_range!r}"
            )
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ConfigError(f"config field 'classifier_dropout' must be in [0, 1), got {self.classifier_dropout!r}")
        if self.pad_token_id is None and self.family.word_padding_row:
            raise ConfigError(
                f"config field 'pad_token_id' is null; {self.family.name} models pad with a token of their vocabulary "
                "(BERT's [PAD] is 0)"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"config field 'pad_token_id' ({self.pad_token_id}) is outside the vocabulary")
        if self.max_position_embeddings <= self.position_offset:
            raise ConfigError(
                f"config field 'max_position_embeddings' ({self.max_position_embeddings}) leaves no position after "
                f"{self.family.name}'s offset of pad_token_id + 1 = {self.position_offset}"
            )
        # JSON object keys are strings; labels are kept with int keys in id order.
        self.id2label = {int(k): str(v) for k, v in sorted(self.id2label.items(), key=lambda kv: int(kv[0]))}
        if list(self.id2label) != list(range(len(self.id2label))):
            raise ConfigError("config field 'id2label' must map 0..N-1 to label names")

    def _check_extra_embeddings(self) -> None:
        if not isinstance(self.extra_embeddings, dict):
            raise ConfigError(
                f"config field 'extra_embeddings' should be an object {{name: rows}}, got {self.extra_embeddings!r}"
            )
        for name, rows in self.extra_embeddings.items():
            if not (isinstance(name, str) and name.isidentifier()) or name in ("word", "position", "token_type"):
                raise ConfigError(
                    f"config field 'extra_embeddings' names a table {name!r}; use a Python identifier other than "
                    "word, position and token_type (those tables exist already)"
                )
            if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
                raise ConfigError(
                    f"config field 'extra_embeddings' gives table {name!r} {rows!r} rows; give a positive integer"
                )

    @property
    def family(self) -> FamilySpec:
        """This config's row of FAMILY_SPECS: what its family changes on the one encoder."""
        return FAMILY_SPECS[self.model_type]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def embedding_width(self) -> int:
        """E: the width of the embedding tables (and of the MLM decoder); H unless factorised."""
        return self.embedding_size or self.hidden_size

    @property
    def shares_layers(self) -> bool:
        """ALBERT: one layer's weights applied num_hidden_layers times."""
        return self.family.shares_layers

    @property
    def projects_embeddings(self) -> bool:
        """An E → H linear layer after the embeddings: ALBERT always has one, ELECTRA when E != H."""
        return self.family.always_projects or self.embedding_width != self.hidden_size

    @property
    def position_offset(self) -> int:
        """The first position id: RoBERTa numbers real tokens from pad_token_id + 1 (fairseq's convention)."""
        return self.pad_token_id + 1 if self.family.positions_after_pad else 0

    @property
    def max_length(self) -> int:
        """The longest input the position table covers."""
        return self.max_position_embeddings - self.position_offset

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> BertConfig:
        model_type = data.get("model_type", "bert")
        if model_type not in FAMILY_SPECS:
            raise ConfigError(
                f"{source}: model_type is {model_type!r}; bertkit reads {', '.join(FAMILY_SPECS)} folders "
                "(convert the model, or fix the field)"
            )
        spec = FAMILY_SPECS[model_type]
        known = {f.name for f in fields(cls)} - (set(FAMILY_FIELDS) - spec.fields) | {"model_type"}
        kwargs = {**spec.fixed_fields, **spec.defaults}  # e.g. AlbertConfig's classifier_dropout_prob 0.1
        data, tables = _switched_tables(data, spec, source)
        for key, value in data.items():
            if key in spec.key_renames:  # the family's name for a field (ALBERT's classifier_dropout_prob)
                name = spec.key_renames[key]
                if name in data:
                    raise ConfigError(
                        f"{source}: has both '{key}' and '{name}', one setting under two names; {spec.name} "
                        f"files name it '{key}': remove '{name}'"
                    )
                kwargs[name] = value
            elif key in spec.dropped_keys:
                continue
            elif key in known:
                kwargs[key] = value
            elif key in (fixed := {**FIXED_KEYS, **spec.fixed_keys}):
                if value != fixed[key]:
                    raise ConfigError(
                        f"{source}: '{key}' = {json.dumps(value)[:60]} is not supported by bertkit's {spec.name} "
                        f"(only {json.dumps(fixed[key])})"
                    )
            elif key == "label2id" or key in IGNORED_KEYS:
                continue
            elif key == "num_labels":
                if "id2label" not in data:
                    kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(_num_labels(value, source))}
            else:
                raise ConfigError(
                    f"{source}: unknown key '{key}'; bertkit builds a BERT encoder from the keys of "
                    "transformers.BertConfig — remove the key or convert the model first"
                )
        for name, (other, factor) in spec.derived.items():  # GPT-2's n_inner null: 4 × n_embd
            base = kwargs.get(other, _field_default(other))
            if kwargs.get(name) is None and isinstance(base, int) and not isinstance(base, bool):
                kwargs[name] = factor * base
        if tables and isinstance(kwargs.get("extra_embeddings", {}), dict):
            kwargs["extra_embeddings"] = {**kwargs.get("extra_embeddings", {}), **tables}
        _check_types(kwargs, source)
        if "id2label" in kwargs:
            kwargs["id2label"] = _id2label(kwargs["id2label"], source)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        except TypeError as e:  # a value of the wrong type that __post_init__ did not catch
            raise ConfigError(f"{source}: {e}") from None

    def to_dict(self) -> dict:
        spec = self.family
        data = asdict(self)
        id2label = data.pop("id2label")
        for table, (flag, rows_key, default_rows) in spec.switched_tables.items():  # ERNIE's use_task_id & co.
            rows = data["extra_embeddings"].pop(table, None)  # asdict's copy
            data[flag], data[rows_key] = rows is not None, rows or default_rows
        for name in BERTKIT_FIELDS:  # only a delta the family row does not already imply is written
            if data[name] == spec.defaults.get(name, _field_default(name)):
                data.pop(name)
        for name in ("classifier_dropout", "bos_token_id", "eos_token_id"):
            if data[name] is None:
                data.pop(name)
        for key in (*(k for k in FAMILY_FIELDS if k not in spec.fields), *spec.fixed_fields):
            data.pop(key)
        if "embedding_size" in data:
            data["embedding_size"] = self.embedding_width
        for key, name in spec.key_renames.items():  # under the name the family's transformers class reads
            if name in data:
                data[key] = data.pop(name)
        data.update(spec.fixed_keys)
        if id2label:
            data["id2label"] = {str(i): name for i, name in id2label.items()}
            data["label2id"] = {name: i for i, name in id2label.items()}
        return data

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        config = cls.from_dict(data, source=str(path))
        in_file = {name: key for key, name in config.family.key_renames.items()}  # under the family's names
        needed = [k for k in ARCHITECTURE_KEYS if k not in config.family.derived]
        missing = [in_file.get(k, k) for k in needed if in_file.get(k, k) not in data]
        if missing:  # the defaults are bert-base's: building that from `{}` would only end in 160 missing tensors
            shown = ["model_type"] * ("model_type" not in data and len(missing) == len(needed)) + missing
            raise ConfigError(
                f"{path}: has no {' / '.join(shown)}; it is not a BERT-family config (transformers and Google's "
                "bert_config.json write every one of these)"
            )
        return config

    def save(self, path: str | os.PathLike, architectures: list[str] | None = None) -> None:
        data = self.to_dict()
        if architectures:
            data = {"architectures": architectures, **data}
        atomic_write_text(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _switched_tables(data: dict, spec: FamilySpec, source: str) -> tuple[dict, dict[str, int]]:
    """The file's keys less the family's table switches, and the extra_embeddings they turn on (ERNIE's use_task_id
    + task_type_vocab_size -> {"task_type": rows}). A table switched off sizes nothing: its size is not kept."""
    rest, tables = dict(data), {}
    for table, (flag, rows_key, default_rows) in spec.switched_tables.items():
        on, rows = rest.pop(flag, False), rest.pop(rows_key, default_rows)
        if not isinstance(on, bool):
            raise ConfigError(f"{source}: config field '{flag}' should be true or false, got {json.dumps(on)[:60]}")
        if not on:
            continue
        if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
            raise ConfigError(
                f"{source}: config field '{rows_key}' must be a positive integer, got {json.dumps(rows)[:60]}"
            )
        if isinstance(extra := rest.get("extra_embeddings"), dict) and table in extra:
            raise ConfigError(
                f"{source}: has both '{flag}' and an 'extra_embeddings' table {table!r}, one table under two names; "
                f"{spec.name} files name it '{flag}' / '{rows_key}': remove it from 'extra_embeddings'"
            )
        tables[table] = rows
    return rest, tables


def _field_default(name: str) -> object:
    f = next(f for f in fields(BertConfig) if f.name == name)
    return f.default_factory() if f.default_factory is not MISSING else f.default


MAX_LABELS = 100_000  # more classes than any labelled data set has; a head that wide is a mistake in the file


def _num_labels(value: object, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LABELS:
        raise ConfigError(
            f"{source}: config field 'num_labels' should be a whole number in 1..{MAX_LABELS:,}, "
            f"got {json.dumps(value)}"
        )
    return value


def _id2label(value: object, source: str) -> dict[int, str]:
    """HF's id2label: an object {"0": "neg", "1": "pos"}, ids 0..N-1, each name a distinct string. Why strict:
    the names are what predictions print and what evaluation data is checked against."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"{source}: config field 'id2label' should be an object of ids to names, as "
            f'{{"0": "neg", "1": "pos"}}, got {type(value).__name__} {json.dumps(value, ensure_ascii=False)[:60]}'
        )
    if len(value) > MAX_LABELS:
        raise ConfigError(f"{source}: config field 'id2label' has {len(value):,} labels; at most {MAX_LABELS:,}")
    labels = {}
    for key, name in value.items():
        key_text = str(key).strip()
        if not key_text.isdigit():
            raise ConfigError(f"{source}: config field 'id2label' has key {key!r}; the keys are ids 0, 1, 2, ...")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"{source}: config field 'id2label' maps {key!r} to {json.dumps(name)}; a label name is a "
                "non-empty string"
            )
        labels[int(key_text)] = name
    if sorted(labels) != list(range(len(labels))):
        raise ConfigError(f"{source}: config field 'id2label' must map ids 0..{len(labels) - 1} to label names")
    seen: dict[str, int] = {}
    for i, name in sorted(labels.items()):
        if name in seen:
            raise ConfigError(
                f"{source}: config field 'id2label' names label {name!r} twice (ids {seen[name]} and {i}); "
                "each class needs a name of its own"
            )
        seen[name] = i
    return labels


def _check_types(kwargs: dict, source: str) -> None:
    """Each field's JSON type before __post_init__ compares it: "0.1" for a dropout would otherwise end as a
    message about `<=` between str and float that names no field."""
    hints = typing.get_type_hints(BertConfig)
    wanted = {int: "a whole number", float: "a number", str: "a string"}
    for key, value in kwargs.items():
        hint = hints.get(key)
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if optional:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if hint not in wanted or (optional and value is None):
            continue
        ok = isinstance(value, str) if hint is str else isinstance(value, (int, float) if hint is float else int)
        if not ok or isinstance(value, bool):
            raise ConfigError(f"{source}: config field '{key}' should be {wanted[hint]}, got {json.dumps(value)[:60]}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _preset(layers: int, hidden: int, heads: int, vocab: int) -> dict:
    return dict(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        vocab_size=vocab,
    )


ENGLISH_VOCAB, CHINESE_VOCAB = 30522, 21128
# Sizes: bert-base/large from Devlin et al. 2018 (google-research/bert README); tiny/mini/small/medium are
# the "24 smaller BERT models" of Turc et al. 2019 ("Well-Read Students Learn Better"), same repository.
# Each comes with the English uncased vocabulary and, as "-chinese", with bert-base-chinese's vocabulary.
_SIZES = {
    "bert-tiny": (2, 128, 2),
    "bert-mini": (4, 256, 4),
    "bert-small": (4, 512, 8),
    "bert-medium": (8, 512, 8),
    "bert-base": (12, 768, 12),
    "bert-large": (24, 1024, 16),
}
PRESETS: dict[str, dict] = {}
for _name, (_l, _h, _a) in _SIZES.items():
    PRESETS[_name] = _preset(_l, _h, _a, ENGLISH_VOCAB)
    PRESETS[f"{_name}-chinese"] = _preset(_l, _h, _a, CHINESE_VOCAB)


# The family (sources: ALBERT, Lan et al. 2019, google-research/albert configs; albert_zh's albert_tiny_zh
# (brightmart): 4 × 312, E 128, 21,128 Chinese tokens; RoBERTa, Liu et al. 2019, fairseq / HF roberta-base;
# ELECTRA, Clark et al. 2020 Table 6 and google-research/electra's configure_pretraining.py; DistilBERT below).
def _albert(layers: int, hidden: int, heads: int, vocab: int = 30000, embedding: int = 128) -> dict:
    return dict(
        _preset(layers, hidden, heads, vocab),
        model_type="albert",
        embedding_size=embedding,
        hidden_act="gelu_new",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.1,
    )


def _roberta(layers: int, hidden: int, heads: int, vocab: int = 50265) -> dict:
    return dict(
        _preset(layers, hidden, heads, vocab),
        model_type="roberta",
        pad_token_id=1,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
    )


def _electra(layers: int, hidden: int, heads: int, embedding: int, vocab: int = ENGLISH_VOCAB) -> dict:
    return dict(_preset(layers, hidden, heads, vocab), model_type="electra", embedding_size=embedding)


def _distilbert(layers: int, hidden: int, heads: int, vocab: int = ENGLISH_VOCAB) -> dict:
    return dict(
        _preset(layers, hidden, heads, vocab), model_type="distilbert", type_vocab_size=0, classifier_dropout=0.2
    )


PRESETS.update(
    {
        "albert-base": _albert(12, 768, 12),
        "albert-large": _albert(24, 1024, 16),
        "albert-tiny-chinese": dict(_albert(4, 312, 12, CHINESE_VOCAB), intermediate_size=1248),
        "roberta-base": _roberta(12, 768, 12),
        "roberta-large": _roberta(24, 1024, 16),
        "roberta-mini-chinese": _roberta(4, 256, 4, CHINESE_VOCAB),
        "electra-small": _electra(12, 256, 4, 128),
        "electra-base": _electra(12, 768, 12, 768),
        "electra-small-chinese": _electra(12, 256, 4, 128, CHINESE_VOCAB),
        # ERNIE 2.0's task types: 3 as PaddleNLP's ernie-3.0-base-zh config (3.0 medium..nano: 16); BERT's vocabulary
        "ernie-mini-chinese": dict(
            _preset(4, 256, 4, CHINESE_VOCAB), model_type="ernie", extra_embeddings={"task_type": 3}
        ),
        # DistilBERT (Sanh et al. 2019; HF distilbert-base-uncased): half the teacher's layers, BERT's width. The
        # mini student halves bert-mini-chinese (4 -> 2 layers x 256), for tests and distillation from it.
        "distilbert-base": _distilbert(6, 768, 12),
        "distilbert-mini-chinese": _distilbert(2, 256, 4, CHINESE_VOCAB),
    }
)


# GPT-2 (Radford et al. 2019; OpenAI's gpt2 = HF gpt2): pre-LayerNorm, tanh GELU, 1,024 positions, byte-level BPE
# of 50,257 tokens. The Chinese sizes take bert-base-chinese's WordPiece vocabulary, as UER's gpt2-chinese models
# do ([CLS] opens a text, [SEP] ends it), at BERT-Tiny's and BERT-Mini's sizes with 512 positions.
def _gpt2(layers: int, hidden: int, heads: int, vocab: int = 50257, positions: int = 1024) -> dict:
    return dict(
        _preset(layers, hidden, heads, vocab),
        model_type="gpt2",
        type_vocab_size=0,
        norm_position="pre",
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        max_position_embeddings=positions,
    )


PRESETS.update(
    {
        "gpt2": _gpt2(12, 768, 12),
        "gpt2-medium": _gpt2(24, 1024, 16),
        "gpt2-tiny-chinese": _gpt2(2, 128, 2, CHINESE_VOCAB, 512),
        "gpt2-mini-chinese": _gpt2(4, 256, 4, CHINESE_VOCAB, 512),
    }
)


def from_preset(name: str, **overrides) -> BertConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return BertConfig(**{**PRESETS[name], **overrides})
