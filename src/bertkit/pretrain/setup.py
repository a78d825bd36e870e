"""Everything a pretraining run needs, from a corpus: the tokenizer (trained, given, or the `--init` model's),
the token shards, the model with its heads, and the training and held-out data.

Recipes (`RECIPES`, pretrain/recipes.py) are complete rows: each variant's pretraining as its paper describes it.
A flag overrides a value of the row (`resolve_recipe`); `build_pretraining` reads the row and names no family.

Choices:
- A recipe runs on any family whose transformers classes have the heads it trains (`Recipe.heads` against
  `hf.FAMILIES[model_type].heads`): RoBERTa's recipe (MLM alone) on a BERT, ALBERT's SOP through a BERT's NSP
  head; ELECTRA's replaced-token detection only on an ELECTRA, the one family with an RTD head. Without
  `--recipe` a model gets the first row whose preset is of its family (the table lists each family's own first).
- ALBERT's paper trained with LAMB at batch 4,096; bertkit uses AdamW for every recipe (the batch sizes a CPU
  takes do not need LAMB's layer-wise trust ratio). ALBERT's sentencepiece vocabulary is replaced by the
  WordPiece one (albert_zh did the same for Chinese).
- This module imports neither torch nor numpy until a run is built: the CLI reads the rows for its choices.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bertkit.errors import BertkitError
from bertkit.pretrain.recipes import (  # noqa: F401 - the rows, importable from here as before
    MASKING_UNITS,
    OBJECTIVES,
    RECIPES,
    Recipe,
    recipe_help,
    recipe_table,
)
from bertkit.pretrain.task_names import TASKS

if TYPE_CHECKING:
    from bertkit.pretrain.dataset import PretrainingData
    from bertkit.pretrain.masking import Segmenter
    from bertkit.pretrain.objectives import PretrainingObjective


def preset_family(preset: str) -> str:
    from bertkit.config import PRESETS

    if preset not in PRESETS:
        raise BertkitError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[preset].get("model_type", "bert")


def resolve_recipe(
    recipe: str | None = None,
    preset: str | None = None,
    init: str | None = None,
    **flags,
) -> Recipe:
    """The run's recipe: the named row (else the first row of the model's family), with the flags given (not None)
    put in: objective, masking, dynamic, dupe_factor, generator_size, segmenter. The model's family must have the
    heads the result trains; a flag the recipe would ignore is refused."""
    from bertkit.config import FAMILY_NAMES, FAMILY_SPECS, BertConfig
    from bertkit.hf import FAMILIES

    if recipe is not None and recipe not in RECIPES:
        raise BertkitError(f"--recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    family = None
    if init is not None:
        family = BertConfig.from_json(Path(init) / "config.json").model_type
    elif preset is not None:
        family = preset_family(preset)
    if recipe is None:
        recipe = next((r.name for r in RECIPES.values() if family in (None, preset_family(r.preset))), "bert")
    given = {k: v for k, v in flags.items() if v is not None}
    if "generator_size" in given and not RECIPES[recipe].generator_size:
        raise BertkitError(f"--generator-size sizes ELECTRA's generator; this run's recipe is {recipe}, which has none")
    row = replace(RECIPES[recipe], **given, **({"preset": preset} if preset is not None else {}))
    if row.objective not in OBJECTIVES:
        raise BertkitError(f"--objective {row.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if row.masking not in MASKING_UNITS:
        raise BertkitError(f"--masking {row.masking!r}: choose one of {', '.join(MASKING_UNITS)}")
    if row.tasks:
        _check_tasks(row.tasks)
    if "tasks" in given and not RECIPES[row.name].tasks:
        raise BertkitError(
            f"--tasks names ERNIE 2.0's stages; this run's recipe is {row.name}: give --recipe ernie-2.0"
        )
    if "masking" in given and row.stages:
        row = replace(row, stages=())  # --masking replaces the recipe's stages with one unit throughout
    if "entities" in given and "ernie-entity" not in row.units:
        raise BertkitError("--entities gives the units of --masking ernie-entity; this run masks no entities")
    if "dupe_factor" in given and row.dynamic:
        raise BertkitError("--dupe-factor counts static masked copies; this run masks afresh each epoch (dynamic)")
    if row.boundary_objective and row.objective != "full":
        raise BertkitError(
            f"--objective {row.objective}: recipe {row.name}'s span boundary objective trains on single segments; "
            "give --objective full or another --recipe"
        )
    if row.boundary_objective and row.masking != "span":
        raise BertkitError(
            f"--masking {row.masking}: recipe {row.name}'s span boundary objective predicts masked spans; "
            "give --masking span or another --recipe"
        )
    if (row.lm != "masked") != (row.masking == "none"):
        raise BertkitError(
            f"--masking {row.masking}: recipe {row.name} trains a {row.lm} language model, which reads the text as it "
            "is; give --masking none, or another --recipe"
            if row.lm != "masked"
            else f"--masking none masks nothing, and recipe {row.name} predicts masked tokens; give another --masking"
        )
    if row.lm != "masked" and "objective" in given and row.objective != "full":
        raise BertkitError(
            f"--objective {row.objective}: recipe {row.name} trains a {row.lm} language model on full sentences "
            "(it has no sentence-pair head); give --objective full or another --recipe"
        )
    if "segmenter" in given and not row.needs_words:
        raise BertkitError(
            "--segmenter finds the words that --masking wwm, span and ngram take whole; this run masks single tokens"
        )
    family = family or preset_family(row.preset)
    if row.tasks and "task_type" not in FAMILY_SPECS[family].switched_tables:
        what = f"--init {init}" if init else f"--preset {row.preset}"
        raise BertkitError(
            f"{what}: recipe {row.name} trains a task embedding, which {FAMILY_NAMES[family]} models have no table "
            "for; give an ERNIE model (--preset ernie-mini-chinese)"
        )
    missing = [h for h in row.heads if h not in FAMILIES[family].heads]
    if missing:
        head = missing[0]
        what = f"--init {init}" if init else f"--preset {row.preset}"
        having = " or ".join(FAMILY_NAMES[f] for f, fam in FAMILIES.items() if head in fam.heads)
        trains = f"--objective {row.objective}" if head == "nsp" else f"--recipe {row.name}"
        instead = "give --objective full (MLM alone)" if head == "nsp" else "give another --recipe"
        other = "a model folder" if init else "a preset"
        raise BertkitError(
            f"{what}: {FAMILY_NAMES[family]} has no {HEAD_NAMES.get(head, head)} head in transformers, and "
            f"{trains} trains one; {instead}, or {other} of {having}"
        )
    return row


def _check_tasks(stages: tuple[tuple[str, ...], ...]) -> None:
    for i, stage in enumerate(stages, 1):
        unknown = [t for t in stage if t not in TASKS]
        if unknown or not stage:
            what = f"names {unknown[0]!r}" if unknown else "is empty"
            raise BertkitError(f"--tasks: stage {i} {what}; a stage is tasks joined by commas from {', '.join(TASKS)}")
        if len(set(stage)) < len(stage):
            raise BertkitError(f"--tasks: stage {i} ({','.join(stage)}) names a task twice")


HEAD_NAMES = {
    "lm": "left-to-right language-model (lm)",
    "nsp": "sentence-pair (NSP / SOP)",
    "rtd": "replaced-token-detection (rtd)",
    "mlm": "masked-LM (mlm)",
}


def build_pretraining(
    corpus: list[str],
    recipe: Recipe | str = "bert",
    init: str | None = None,
    tokenizer_path: str | None = None,
    vocab_size: int = 8000,
    max_seq_length: int = 128,
    eval_fraction: float = 0.02,
    label_smoothing: float = 0.0,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
    chunk_tokens: int = 1_000_000,
    **config_overrides,
) -> tuple[PretrainingObjective, object, PretrainingData, PretrainingData | None]:
    """Everything `pretrain` needs, from a corpus and a recipe (a row of `RECIPES` or its name; `resolve_recipe`
    gives one with the flags put in): tokenizer, token shards, model with its objective, train/held-out data.

    The tokenizer comes from `init` (continued pretraining of that model), else `tokenizer_path`, else a
    new vocabulary of `vocab_size` trained on the corpus and saved with the model, of the recipe's kind
    (WordPiece or byte-level BPE). A recipe with replaced-token detection builds ELECTRA's generator
    (`generator_size` of the width) and discriminator (`ElectraPretraining`); one with the span boundary objective
    builds `spanbert.SpanBertPretraining`, with the `--init` folder's span boundary head when it has one.
    """
    from bertkit.hf import check_vocab_fits
    from bertkit.pretrain.corpus import resolve_corpus
    from bertkit.pretrain.dataset import PretrainingData

    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    if chunk_tokens < 0:
        raise BertkitError(f"--chunk-tokens must be 0 (the whole epoch at once) or more, got {chunk_tokens}")
    if recipe.dupe_factor < 1:
        raise BertkitError(f"--dupe-factor must be at least 1 (versions of the masked data), got {recipe.dupe_factor}")
    if recipe.masking not in MASKING_UNITS:
        raise BertkitError(f"--masking {recipe.masking!r}: choose one of {', '.join(MASKING_UNITS)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise BertkitError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    source = resolve_corpus(corpus)
    if init is not None:
        tokenizer, encoder, heads = _continued_model(init, recipe)
    else:
        tokenizer, encoder, heads = _new_model(source, recipe, tokenizer_path, vocab_size, config_overrides)
    config = encoder.config
    check_vocab_fits(tokenizer, config, init or "the model")
    if max_seq_length > config.max_length:
        raise BertkitError(
            f"--max-seq-length {max_seq_length} is more than the model's max_position_embeddings ({config.max_length})"
        )
    cache = Path(cache_dir or os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    common = _data(source, tokenizer, recipe, cache, max_seq_length, eval_fraction, seed, progress)
    model = _objective(recipe, encoder, heads, label_smoothing, tokenizer)
    train_ids, eval_ids = common.pop("split")
    train_data = PretrainingData(
        doc_ids=train_ids, dynamic=recipe.dynamic, dupe_factor=recipe.dupe_factor, chunk_tokens=chunk_tokens, **common
    )
    eval_data = PretrainingData(doc_ids=eval_ids, **common) if len(eval_ids) else None
    if recipe.tasks:  # ERNIE 2.0: each task's own instances and masking over the same documents
        from bertkit.pretrain.ernie2 import task_mix

        train_data = task_mix(train_data, recipe.tasks)
        eval_data = task_mix(eval_data, recipe.tasks) if eval_data is not None else None
    return model, tokenizer, train_data, eval_data


def _continued_model(init: str, recipe: Recipe) -> tuple:
    """(tokenizer, encoder, heads) of the `--init` folder, continued as it is."""
    from bertkit.hf import load_pretrained

    ckpt = load_pretrained(init)
    if ckpt.tokenizer is None:
        raise BertkitError(f"{init}: the model folder has no vocab.txt or tokenizer.json")
    if recipe.generator_size:
        raise BertkitError(
            f"{init}: continued ELECTRA pretraining needs its generator too, which --init does not read yet; "
            "fine-tune the discriminator, or pretrain an ELECTRA from scratch"
        )
    encoder = ckpt.encoder
    if recipe.tasks and ckpt.config.extra_embeddings.get("task_type", 0) < len(TASKS):
        rows = ckpt.config.extra_embeddings.get("task_type", 0)
        raise BertkitError(
            f"{init}: recipe {recipe.name} needs a task_type table of {len(TASKS)} rows (one per task), the model has "
            f"{rows} (task_type_vocab_size in config.json); continue it with another --recipe"
        )
    if encoder.pooler is None and recipe.pooler:
        # An MLM-only model (BertForMaskedLM has no pooler) gets a fresh one for NSP / SOP, initialised as a new
        # model's would be, just as its NSP head starts fresh.
        import torch.nn as nn

        from bertkit.model import init_weights

        encoder.pooler = nn.Linear(ckpt.config.hidden_size, ckpt.config.hidden_size)
        init_weights(encoder.pooler, ckpt.config.initializer_range)
        trains = "the sentence tasks train" if recipe.tasks else f"--objective {recipe.objective} trains"
        print(f"{init}: the model has no pooler; {trains} a new one")
    heads = dict(ckpt.heads)
    if recipe.boundary_objective:
        from bertkit.pretrain.spanbert import SBO_FILE, SpanBoundaryHead

        if (Path(init) / SBO_FILE).exists():
            heads["sbo"] = SpanBoundaryHead(ckpt.config, recipe.max_span)
            heads["sbo"].load(init)
        else:
            print(f"{init}: the model has no {SBO_FILE}; the span boundary objective trains a new head")
    if recipe.tasks:
        from bertkit.pretrain.ernie2 import HEADS_FILE, StructureHeads

        heads["structure"] = StructureHeads(ckpt.config)
        if (Path(init) / HEADS_FILE).exists():
            heads["structure"].load(init)
        else:
            print(f"{init}: the model has no {HEADS_FILE}; ERNIE 2.0's structure tasks train new heads")
    return ckpt.tokenizer, encoder, heads


def _new_model(source, recipe: Recipe, tokenizer_path: str | None, vocab_size: int, overrides: dict) -> tuple:
    """(tokenizer, encoder, no heads) of a new model: the recipe's preset and tokenizer kind, or the given one."""
    from bertkit.config import from_preset
    from bertkit.model import BertEncoder
    from bertkit.pretrain.corpus import read_documents

    if tokenizer_path is not None:
        from bertkit.vocab import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
    else:
        sentences = (s for doc in read_documents(source) for s in doc)
        if recipe.tokenizer == "bpe":
            from bertkit.bpe import ByteLevelBPETokenizer

            tokenizer = ByteLevelBPETokenizer.train(sentences, vocab_size=vocab_size)
        else:
            from bertkit.tokenizer import Tokenizer

            tokenizer = Tokenizer.train(sentences, vocab_size=vocab_size, show_progress=False)
    if recipe.tasks:  # a task embedding per ERNIE 2.0 task
        overrides = {"extra_embeddings": {"task_type": len(TASKS)}} | overrides
    if recipe.lm == "causal":  # a text opens with [CLS] (<s>) and ends with [SEP] (</s>): generation stops there
        overrides = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id} | overrides
    config = from_preset(
        recipe.preset, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, **overrides
    )
    # A pooler only where a sentence-level head reads it: BertForMaskedLM & co. have none.
    return tokenizer, BertEncoder(config, add_pooler=recipe.pooler), {}


def _objective(recipe: Recipe, encoder, heads: dict, label_smoothing: float, tokenizer) -> PretrainingObjective:
    """The recipe's objective over the encoder: ELECTRA's generator and discriminator when it detects replaced
    tokens, MLM with SpanBERT's span boundary head when it has that objective, else MLM with an NSP / SOP head
    unless it trains on full sentences alone."""
    from bertkit.errors import ConfigError
    from bertkit.model import BertEncoder, MLMHead, NSPHead, RTDHead
    from bertkit.pretrain.objectives import BertPretraining, ElectraPretraining, electra_generator_config

    config = encoder.config
    if recipe.generator_size:
        try:
            gen_config = electra_generator_config(config, recipe.generator_size)
        except ConfigError as e:
            raise BertkitError(str(e)) from None
        generator = BertEncoder(gen_config, add_pooler=False)
        return ElectraPretraining(
            generator, MLMHead(gen_config), encoder, RTDHead(config), label_smoothing=label_smoothing
        )
    if recipe.lm == "causal":
        from bertkit.model import LMHead
        from bertkit.pretrain.autoregressive import CausalLMPretraining

        return CausalLMPretraining(encoder, heads.get("lm") or LMHead(), label_smoothing)
    mlm = heads.get("mlm") or MLMHead(config)
    if recipe.lm == "permuted":
        from bertkit.pretrain.autoregressive import PermutationLMPretraining

        special = tuple(tokenizer.all_special_ids)
        return PermutationLMPretraining(encoder, mlm, tokenizer.mask_token_id, special, label_smoothing=label_smoothing)
    if recipe.tasks:
        from bertkit.pretrain.ernie2 import Ernie2Pretraining, StructureHeads

        return Ernie2Pretraining(encoder, mlm, heads.get("structure") or StructureHeads(config), label_smoothing)
    if recipe.boundary_objective:
        from bertkit.pretrain.spanbert import SpanBertPretraining, SpanBoundaryHead

        sbo = heads.get("sbo") or SpanBoundaryHead(config, recipe.max_span)
        return SpanBertPretraining(encoder, mlm, sbo, label_smoothing=label_smoothing)
    nsp = None if recipe.objective == "full" else (heads.get("nsp") or NSPHead(config))
    return BertPretraining(encoder, mlm, nsp, label_smoothing=label_smoothing)


def _data(
    source, tokenizer, recipe: Recipe, cache: Path, max_seq_length: int, eval_fraction: float, seed: int, progress: bool
) -> dict:
    """The token shards (word starts on them when the masking takes words whole) and what both splits share."""
    from bertkit.pretrain.dataset import Vocab, split_documents
    from bertkit.pretrain.masking import make_segmenter
    from bertkit.pretrain.shards import MarkedDocuments, build_shards, word_starts

    shards = build_shards(source, tokenizer, cache / "shards", progress=progress)
    vocab = Vocab.of(tokenizer)
    unit = "span_boundaries" if recipe.boundary_objective else MASKING_UNITS[recipe.units[0]]
    documents, segmenter, entities = shards, None, None
    if recipe.needs_words:  # find the words once per corpus and segmenter; they ride along on the token ids
        segmenter = make_segmenter(recipe.segmenter)
        entity_starts = None
        if "ernie-entity" in recipe.units:  # entity units likewise, as a second bit
            entities = entity_source(recipe.entities, source)
            entity_starts = word_starts(shards, vocab.tokens, progress, entities)
        documents = MarkedDocuments(shards, word_starts(shards, vocab.tokens, progress, segmenter), entity_starts)
    return dict(
        split=split_documents(len(shards), eval_fraction, seed),
        documents=documents,
        vocab=vocab,
        max_seq_length=max_seq_length,
        objective=recipe.objective,
        masking=recipe.masking_config(),
        unit=unit,
        seed=seed,
        segmenter=segmenter,
        entities=entities,
    )


def entity_source(entities: str | None, source) -> Segmenter:
    """The entity units of ERNIE's entity masking: the `--entities` file, else the built-in People's Daily's
    nr / ns / nt tags when that is the whole corpus; any other corpus has no tags, and that is an error."""
    from bertkit.pretrain.corpus import BUILTIN_CORPORA, resolve_corpus
    from bertkit.pretrain.shards import builtin_entities, entity_file

    if entities is not None:
        return entity_file(entities)
    if resolve_corpus(source) != BUILTIN_CORPORA["peoples-daily"]:
        raise BertkitError(
            "--masking ernie-entity needs --entities FILE (one entity per line): only the built-in peoples-daily "
            "corpus has entity tags"
        )
    return builtin_entities()


if __name__ == "__main__":  # `python -m bertkit.pretrain.setup`: the table docs/pretraining.md shows
    print(recipe_table())
