"""The family rows: what each `model_type` changes on the one encoder, as data (`FamilySpec`, `FAMILY_SPECS`).

Choices:
- model.py, hf.py, config.py and the heads read these fields, never `model_type`; a family is added by adding a
  row here and its name map to hf_maps.FAMILIES. config.py re-exports every name, as before the split.
- A row names the family's config.json keys its own way (`key_renames`), reads and ignores the keys that size
  nothing bertkit builds (`dropped_keys`), fills the family's `transformers` defaults (`defaults`), and pins what
  its `transformers` classes hard-code (`fixed_fields`, `fixed_keys`): any other value is refused, never built.
- The families:
  * ALBERT: `embedding_size` E < H (embeddings E wide, projected to H), one layer's weights applied
    `num_hidden_layers` times (`shares_layers`); `num_hidden_groups` / `inner_group_num` other than 1 are
    refused (no released ALBERT uses them, and building a different sharing silently would be wrong).
  * RoBERTa: position ids start at `pad_token_id + 1` (`position_offset`), one token type, LayerNorm eps 1e-5.
  * ELECTRA: `embedding_size` may differ from H (a projection E → H), no pooler.
  * ERNIE: BERT plus the task-type table `extra_embeddings["task_type"]` (`use_task_id`, `task_type_vocab_size`).
  * DistilBERT: BERT's post-LayerNorm layer under other names (`dim`, `n_layers`, `hidden_dim`, `activation`,
    ...), no token types, no pooler, LayerNorm eps 1e-12 hard-coded, learned positions only (`sinusoidal_pos_embds`
    true is refused); sequence classification and multiple choice read the first token through `pre_classifier`
    → ReLU → `classifier`. `qa_dropout` is read and not kept: bertkit's QA head has no dropout (as BERT's), so a
    folder written back carries DistilBertConfig's default. Outputs are identical in eval mode; training keeps
    bertkit's dropout placement (also after attention and before the first-token head, as BERT and RoBERTa),
    where DistilBERT has none, and the tagger's dropout is `seq_classif_dropout`, DistilBERT's `dropout`.
  * GPT-2: the same blocks read left to right (`causal`: every forward pass masks the future), pre-LayerNorm with
    a final LayerNorm (`norm_position` "pre", fixed), no token types, no pooler, and a word table without a
    padding row (GPT-2 has no padding token; a folder that pads with its end-of-text id must still train that
    row). GPT2Config's names (`n_embd`, `n_layer`, `n_head`, `n_inner`, `n_positions`, `activation_function`,
    `resid_pdrop`, `attn_pdrop`, `layer_norm_epsilon`); `n_inner` null means 4 × `n_embd` (`derived`).
    `embd_pdrop` is read and not kept: bertkit drops out the embeddings at `resid_pdrop` (GPT2Config's defaults
    are both 0.1), so a folder written back carries GPT2Config's default. The `summary_*` keys configure
    GPT2DoubleHeadsModel's multiple-choice head: bertkit builds GPT2Config's default (a biased linear score at each
    choice's last token) and refuses others; its dropouts are read and not kept. `scale_attn_weights` true and
    `scale_attn_by_inverse_layer_idx` false are what the one encoder computes (softmax(QKᵀ/√d)); any other
    value is refused. `reorder_and_upcast_attn` changes only rounding and is read and ignored. Sequence
    classification reads the last real token (GPT2ForSequenceClassification's `score`, no bias: in a causal model
    only the last token has seen the whole text); tagging and QA are BERT's heads under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Config fields only some families' config.json carry (FamilySpec.fields says which).
FAMILY_FIELDS = ("embedding_size", "num_hidden_groups", "inner_group_num")


@dataclass(frozen=True)
class FamilySpec:
    """One family's deltas on the one encoder. The defaults are BERT's."""

    name: str  # for messages: "ALBERT"
    fields: frozenset[str] = frozenset()  # the FAMILY_FIELDS its config.json carries
    key_renames: dict[str, str] = field(default_factory=dict)  # config.json key -> BertConfig field
    dropped_keys: frozenset[str] = frozenset()  # config.json keys read and ignored (they size no tensor we build)
    defaults: dict[str, object] = field(default_factory=dict)  # field values when config.json omits the key
    # Fields the family's transformers classes hard-code: only this value is built, and config.json never has them.
    fixed_fields: dict[str, object] = field(default_factory=dict)
    # config.json keys accepted only with this value, and written with it (what the one encoder implements).
    fixed_keys: dict[str, object] = field(default_factory=lambda: {"position_embedding_type": "absolute"})
    shares_layers: bool = False  # one layer's weights applied at every depth
    always_projects: bool = False  # an E -> H projection even when E == H; otherwise one only when E != H
    positions_after_pad: bool = False  # position ids start at pad_token_id + 1, counted over real tokens
    position_padding_row: bool = False  # the position table's row pad_token_id is a padding row (fairseq)
    pooler: bool = True  # the base model's default
    mlm_act: str | None = None  # the MLM head's activation whatever hidden_act says; None: hidden_act
    classifier_reads_first_token: bool = False  # sequence classifier: dense + act on token 0, not the pooler
    classifier_reads_last_token: bool = False  # sequence classifier: one bias-free linear layer on the last token
    classifier_act: str = "tanh"  # that first-token classifier's activation
    multiple_choice: bool = True  # bertkit builds the family's multiple-choice head
    choice_reads_first_token: bool = False  # that head is the first-token classifier (to 1), not the pooler's
    # {extra table: (flag key, rows key, default rows)}: ERNIE's "task_type" is use_task_id + task_type_vocab_size.
    switched_tables: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    causal: bool = False  # every position attends only to itself and the positions before it (GPT-2)
    word_padding_row: bool = True  # the word table's row pad_token_id is a padding row (zero, never trained)
    # {field: (other field, factor)}: a field config.json omits or gives as null is factor × the other (GPT-2's
    # n_inner null: 4 × n_embd)
    derived: dict[str, tuple[str, int]] = field(default_factory=dict)


# Sources: the transformers configuration and modelling classes of each family (AlbertConfig's
# classifier_dropout_prob 0.1; RobertaLMHead and ElectraGeneratorPredictions use exact GELU; ELECTRA's
# classifier uses GELU, RoBERTa's tanh; ELECTRA's multiple choice is a SequenceSummary, whose summary_* keys
# configure it, which bertkit does not build; DistilBertConfig's defaults: 6 layers, seq_classif_dropout 0.2;
# modeling_distilbert: LayerNorm eps 1e-12 everywhere, pre_classifier + ReLU, the MLM head's activation is
# `activation`).
FAMILY_SPECS: dict[str, FamilySpec] = {
    "bert": FamilySpec("BERT"),
    "albert": FamilySpec(
        "ALBERT",
        fields=frozenset(FAMILY_FIELDS),
        key_renames={"classifier_dropout_prob": "classifier_dropout"},
        defaults={"classifier_dropout": 0.1},
        shares_layers=True,
        always_projects=True,
    ),
    "roberta": FamilySpec(
        "RoBERTa",
        positions_after_pad=True,
        position_padding_row=True,
        mlm_act="gelu",
        classifier_reads_first_token=True,
        classifier_act="tanh",
    ),
    "electra": FamilySpec(
        "ELECTRA",
        fields=frozenset({"embedding_size"}),
        dropped_keys=frozenset({"summary_type", "summary_use_proj", "summary_activation", "summary_last_dropout"}),
        pooler=False,
        mlm_act="gelu",
        classifier_reads_first_token=True,
        classifier_act="gelu",
        multiple_choice=False,
    ),
    "ernie": FamilySpec("ERNIE", switched_tables={"task_type": ("use_task_id", "task_type_vocab_size", 3)}),
    "distilbert": FamilySpec(
        "DistilBERT",
        key_renames={
            "dim": "hidden_size",
            "n_layers": "num_hidden_layers",
            "n_heads": "num_attention_heads",
            "hidden_dim": "intermediate_size",
            "activation": "hidden_act",
            "dropout": "hidden_dropout_prob",
            "attention_dropout": "attention_probs_dropout_prob",
            "seq_classif_dropout": "classifier_dropout",
        },
        dropped_keys=frozenset({"qa_dropout", "tie_weights_"}),  # tie_weights_: older files' tie_word_embeddings
        defaults={"num_hidden_layers": 6, "classifier_dropout": 0.2},
        fixed_fields={"type_vocab_size": 0, "layer_norm_eps": 1e-12},
        fixed_keys={"sinusoidal_pos_embds": False},
        pooler=False,
        classifier_reads_first_token=True,
        classifier_act="relu",
        choice_reads_first_token=True,
    ),
}
# GPT-2 (transformers' GPT2Config / GPT2Model): the defaults are GPT2Config's, the size of OpenAI's gpt2.
FAMILY_SPECS["gpt2"] = FamilySpec(
    "GPT-2",
    key_renames={
        "n_embd": "hidden_size",
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_inner": "intermediate_size",
        "n_positions": "max_position_embeddings",
        "activation_function": "hidden_act",
        "resid_pdrop": "hidden_dropout_prob",
        "attn_pdrop": "attention_probs_dropout_prob",
        "layer_norm_epsilon": "layer_norm_eps",
    },
    dropped_keys=frozenset(
        {
            "n_ctx",  # older files: the context size, n_positions again
            "embd_pdrop",
            "reorder_and_upcast_attn",
            "summary_first_dropout",  # the choice head's dropout, as classifier_dropout
            "summary_last_dropout",
        }
    ),
    defaults={
        "vocab_size": 50257,
        "max_position_embeddings": 1024,
        "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5,
    },
    fixed_fields={"type_vocab_size": 0, "norm_position": "pre"},
    fixed_keys={
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        # GPT2DoubleHeadsModel's choice head as bertkit builds it: a linear score at the given (last) token
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
    },
    pooler=False,
    classifier_reads_last_token=True,
    causal=True,
    word_padding_row=False,
    derived={"intermediate_size": ("hidden_size", 4)},
)
FAMILY_NAMES = {model_type: spec.name for model_type, spec in FAMILY_SPECS.items()}
