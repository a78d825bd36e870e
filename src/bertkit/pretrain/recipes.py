"""The recipes as rows (`RECIPES`): each variant's pretraining as its paper describes it (the model it builds,
objective, language model, masking unit and shares, static or dynamic data, tokenizer, segmenter, Adam β2), with
the paper each value comes from. `recipe_table()` prints the table docs/pretraining.md shows (a test holds the two
equal). No torch or numpy: the CLI reads the rows for its choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bertkit.pretrain.task_names import STAGES

if TYPE_CHECKING:
    from bertkit.pretrain.masking import MaskingConfig

# `--masking` names -> the masking units of `dataset.MASKING_UNITS`
# (ernie-phrase / ernie-entity: ERNIE 1.0's phrase- and entity-level masking, each unit masked as one)
MASKING_UNITS = {
    "token": "token",
    "wwm": "word",
    "span": "span",
    "ngram": "ngram",
    "ernie-phrase": "phrase",
    "ernie-entity": "entity",
    "none": "none",  # the text as it is: a left-to-right language model (GPT) predicts every next token
}
OBJECTIVES = ("nsp", "sop", "full")


@dataclass(frozen=True)
class Recipe:
    """One row: a variant's pretraining, every value a default that the flag of the same name overrides."""

    name: str
    preset: str  # the model built when neither --preset nor --init is given; its family is the recipe's
    objective: Literal["nsp", "sop", "full"]  # MLM plus NSP, plus SOP, or MLM alone on full sentences
    masking: str  # what is chosen: a key of MASKING_UNITS (token, wwm, span, ngram)
    dynamic: bool  # fresh masks every epoch, else `dupe_factor` static copies cycled
    beta2: float  # Adam's β2 (AdamW, weight decay 0.01, ε 1e-6 for every recipe)
    source: str  # the paper (and code) the row's values come from
    # the language model: BERT's cloze, GPT's next token left to right, or XLNet's next token in a random order
    lm: Literal["masked", "causal", "permuted"] = "masked"
    generator_size: float | None = None  # ELECTRA's replaced-token detection: the MLM generator's width fraction
    boundary_objective: bool = False  # SpanBERT's span boundary objective (SBO) beside the MLM; needs span masking
    tokenizer: Literal["wordpiece", "bpe"] = "wordpiece"  # the vocabulary a new model trains on the corpus
    segmenter: str = "jieba"  # finds the words that wwm / span / n-gram masking takes whole (`--segmenter`)
    dupe_factor: int = 5  # static masking: versions of the data
    mlm_probability: float = 0.15  # of the maskable tokens, chosen for prediction
    mask_share: float = 0.8  # of the chosen: [MASK]
    random_share: float = 0.1  # of the chosen: a random token; the rest is kept unchanged
    span_p: float = 0.2  # span masking: lengths in words ~ Geometric(span_p) up to max_span (SpanBERT)
    max_span: int = 10
    max_ngram: int = 3  # n-gram masking: n <= max_ngram words, p(n) ∝ 1/n (ALBERT)
    # Masking units run as stages, one after the other, each an equal share of the steps (ERNIE 1.0's token,
    # phrase, entity); the CLI makes them the loop's phases (`TrainConfig.phase_units`, `loop.Phase.unit`), and
    # the data starts with the first. `masking` is then the last stage. Empty: `masking` throughout.
    stages: tuple[str, ...] = ()
    entities: str | None = None  # ernie-entity: the entity file (`--entities`); None: the built-in corpus's tags
    # ERNIE 2.0's continual multi-task stages (`ernie2.TASKS` names), each an equal share of the steps, the CLI's
    # phases (`TrainConfig.phase_tasks`); knowledge masking masks with `masking`. Empty: one objective throughout.
    tasks: tuple[tuple[str, ...], ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # a value's source where it differs

    @property
    def units(self) -> tuple[str, ...]:
        """The `--masking` names this run masks with: its stages, else its one masking unit."""
        return self.stages or (self.masking,)

    @property
    def needs_words(self) -> bool:
        """Whether a masking unit takes words whole (then the segmenter runs over the corpus)."""
        return any(u not in ("token", "none") for u in self.units)

    @property
    def pooler(self) -> bool:
        """Whether a sentence-level head reads the pooled [CLS] (BertForMaskedLM & co. have no pooler)."""
        return self.objective != "full" or any(t in ("reorder", "distance") for stage in self.tasks for t in stage)

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads the model's family must have (`hf.FAMILIES[...].heads`) for this recipe's objectives."""
        if self.lm == "causal":
            return ("lm",)
        return ("mlm",) + (("nsp",) if self.objective != "full" else ()) + (("rtd",) if self.generator_size else ())

    def masking_config(self) -> MaskingConfig:
        from bertkit.pretrain.masking import MaskingConfig

        return MaskingConfig(
            mlm_probability=self.mlm_probability,
            mask_token_prob=self.mask_share,
            random_token_prob=self.random_share,
            exact_count=not self.dynamic,  # Google's fixed count for static copies, Bernoulli(p) when dynamic
            span_p=self.span_p,
            max_span=self.max_span,
            max_ngram=self.max_ngram,
        )

    def describe(self) -> dict[str, str]:
        """The row in words: the columns of `recipe_table` (and of `bertkit pretrain --help`)."""
        pairs = {"nsp": "MLM + NSP", "sop": "MLM + SOP", "full": "MLM on full sentences"}
        objective = pairs[self.objective]
        if self.boundary_objective:
            objective = f"MLM + SBO (span boundaries, {self.max_span} positions), full sentences"
        if self.generator_size:
            objective = f"RTD + MLM generator ({self.generator_size:g} wide), full sentences"
        if self.tasks:
            objective = " → ".join("+".join(stage) for stage in self.tasks) + " (stages; task embeddings)"
        if self.lm == "causal":
            objective = "next token, left to right (causal LM), full sentences"
        if self.lm == "permuted":
            objective = "next token in a random order (permutation LM, two streams, last 1/6), full sentences"
        unit = {
            "token": "tokens",
            "wwm": "whole words",
            "span": f"spans (geometric p={self.span_p:g}, ≤ {self.max_span} words)",
            "ngram": f"n-grams (n ≤ {self.max_ngram}, p ∝ 1/n)",
            "ernie-phrase": "phrases (segmenter words, one 80/10/10 draw each)",
            "ernie-entity": "entities (one 80/10/10 draw each)",
            "none": "nothing",
        }
        unit = (
            " → ".join(unit[m].split(" (")[0] for m in self.stages) + " stages" if self.stages else unit[self.masking]
        )
        keep = 1 - self.mask_share - self.random_share
        shares = f"{self.mask_share:.0%} [MASK] / {self.random_share:.0%} random / {keep:.0%} kept"
        masking = f"{unit}, {shares}" if self.units != ("none",) else "none (the text as it is)"
        return {
            "recipe": self.name,
            "preset": self.preset,
            "objective": objective,
            "masking": masking,
            "data": "dynamic" if self.dynamic else f"static × {self.dupe_factor}",
            "tokenizer": {"wordpiece": "WordPiece", "bpe": "byte-level BPE"}[self.tokenizer],
            "segmenter": self.segmenter,
            "Adam β2": f"{self.beta2:g}",
            "source": self.source + "".join(f"; {k}: {v}" for k, v in self.sources.items()),
        }


GOOGLE_BERT = "Devlin et al. 2019 (BERT), google-research/bert create_pretraining_data.py"
RECIPES = {
    r.name: r
    for r in (
        Recipe("bert", "bert-mini-chinese", "nsp", "token", dynamic=False, beta2=0.999, source=GOOGLE_BERT),
        Recipe(
            "spanbert",
            "bert-mini-chinese",
            "full",
            "span",
            dynamic=True,
            beta2=0.999,
            boundary_objective=True,
            source="Joshi et al. 2020 (SpanBERT), facebookresearch/SpanBERT: span masking + SBO, single segments",
        ),
        Recipe(
            "albert",
            "albert-tiny-chinese",
            "sop",
            "ngram",
            dynamic=False,
            beta2=0.999,
            source="Lan et al. 2020 (ALBERT), google-research/albert",
            sources={"tokenizer": "albert_zh (WordPiece, not sentencepiece)", "optimizer": "AdamW, not LAMB"},
        ),
        Recipe(
            "roberta",
            "roberta-mini-chinese",
            "full",
            "token",
            dynamic=True,
            beta2=0.98,
            tokenizer="bpe",
            source="Liu et al. 2019 (RoBERTa): FULL-SENTENCES, dynamic masking, β2 0.98, byte-level BPE",
        ),
        Recipe(
            "electra",
            "electra-small-chinese",
            "full",
            "token",
            dynamic=True,
            beta2=0.999,
            generator_size=0.25,
            mask_share=0.85,
            random_share=0.0,
            source="Clark et al. 2020 (ELECTRA), google-research/electra: 85% [MASK] / 15% kept, generator 1/4",
        ),
        Recipe(
            "ernie",
            "bert-mini-chinese",
            "nsp",
            "ernie-entity",
            dynamic=False,
            beta2=0.999,
            stages=("token", "ernie-phrase", "ernie-entity"),
            source="Sun et al. 2019 (ERNIE 1.0): basic, phrase-level, then entity-level masking, units masked whole",
            sources={"stages": "a third of the steps each", "phrases": "segmenter words (the paper's Chinese tool)"},
        ),
        Recipe(
            "ernie-2.0",
            "ernie-mini-chinese",
            "full",
            "ernie-entity",
            dynamic=True,
            beta2=0.999,
            tasks=STAGES,
            source="Sun et al. 2020 (ERNIE 2.0): continual multi-task pretraining, a task embedding per task",
            sources={
                "tasks": "knowledge masking, token-document relation, sentence reordering (9 classes), sentence "
                "distance (3 classes); stage k trains tasks 1..k, a quarter of the steps each, batches in turn",
            },
        ),
        Recipe(
            "gpt",
            "gpt2-mini-chinese",
            "full",
            "none",
            dynamic=True,
            beta2=0.999,
            lm="causal",
            source="Radford et al. 2018 / 2019 (GPT, GPT-2): left-to-right LM, GPT-2's pre-LayerNorm blocks",
            sources={"tokenizer": "WordPiece, as UER's gpt2-chinese ([CLS] opens a text, [SEP] ends it)"},
        ),
        Recipe(
            "xlnet",
            "bert-mini-chinese",
            "full",
            "none",
            dynamic=True,
            beta2=0.999,
            lm="permuted",
            source="Yang et al. 2019 (XLNet): permutation LM, two-stream attention, partial prediction K = 6",
            sources={"positions": "BERT's absolute positions, no Transformer-XL memory (a BERT folder)"},
        ),
    )
}


def recipe_table() -> str:
    """The recipes as a Markdown table, one row each (docs/pretraining.md holds this text)."""
    rows = [r.describe() for r in RECIPES.values()]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row.values()) + " |" for row in rows]
    return "\n".join(lines)


def recipe_help() -> str:
    """The recipes in one line for `bertkit pretrain --help`."""
    rows = (r.describe() | {"unit": " → ".join(r.units)} for r in RECIPES.values())
    return "; ".join(f"{d['recipe']}: {d['objective']}, {d['unit']} masking, {d['data']}, {d['preset']}" for d in rows)
