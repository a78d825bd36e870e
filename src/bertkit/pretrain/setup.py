"""Everything a pretraining run needs, from a corpus: the tokenizer (trained, given, or the `--init` model's),
the token shards, the model with its heads, and the training and held-out data.

Recipes (`RECIPES`): each family's pretraining as its paper describes it, as defaults that any flag overrides.
The family comes from `--recipe`, else from the preset's (or the `--init` model's) `model_type`.

| recipe  | objective                         | masking                       | tokenizer      | Adam β2 |
| ------- | --------------------------------- | ----------------------------- | -------------- | ------- |
| bert    | MLM + NSP                         | tokens, 80/10/10, static      | WordPiece      | 0.999   |
| albert  | MLM + SOP                         | n-grams (n ≤ 3, p ∝ 1/n)      | WordPiece      | 0.999   |
| roberta | MLM on FULL-SENTENCES             | tokens, dynamic               | byte-level BPE | 0.98    |
| electra | MLM generator + RTD discriminator | tokens, 85% [MASK] / 15% kept | WordPiece      | 0.999   |

ALBERT's paper trained with LAMB at batch 4,096; bertkit uses AdamW for every recipe (the batch sizes a CPU
takes do not need LAMB's layer-wise trust ratio). ALBERT's sentencepiece vocabulary is replaced by the
WordPiece one (albert_zh did the same for Chinese).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from bertkit.errors import BertkitError
from bertkit.pretrain.dataset import PretrainingData
from bertkit.pretrain.objectives import BertPretraining

RECIPES = {
    "bert": dict(preset="bert-mini-chinese", objective="nsp", masking="token", dynamic=False, beta2=0.999),
    "albert": dict(preset="albert-tiny-chinese", objective="sop", masking="ngram", dynamic=False, beta2=0.999),
    "roberta": dict(preset="roberta-mini-chinese", objective="full", masking="token", dynamic=True, beta2=0.98),
    "electra": dict(preset="electra-small-chinese", objective="full", masking="token", dynamic=True, beta2=0.999),
}


def resolve_recipe(
    recipe: str | None = None,
    preset: str | None = None,
    init: str | None = None,
    objective: str | None = None,
    masking: str | None = None,
    dynamic: bool | None = None,
) -> dict:
    """The settings of a run: the recipe's defaults, then whatever was given. The recipe must match the model's
    family: an ALBERT recipe on a BERT preset would build one thing and train another."""
    from bertkit.config import FAMILY_NAMES, PRESETS, BertConfig

    family = None
    if init is not None:
        family = BertConfig.from_json(Path(init) / "config.json").model_type
    elif preset is not None:
        if preset not in PRESETS:
            raise BertkitError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
        family = PRESETS[preset].get("model_type", "bert")
    if recipe is not None and recipe not in RECIPES:
        raise BertkitError(f"--recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    if recipe is not None and family is not None and recipe != family:
        what = f"--init {init}" if init else f"--preset {preset}"
        raise BertkitError(
            f"{what} is a {FAMILY_NAMES[family]} model but --recipe is {recipe}; give a {recipe} preset "
            f"(e.g. {RECIPES[recipe]['preset']}) or leave --recipe out"
        )
    recipe = recipe or family or "bert"
    settings = dict(RECIPES[recipe], recipe=recipe)
    if preset is not None:
        settings["preset"] = preset
    for name, value in (("objective", objective), ("masking", masking), ("dynamic", dynamic)):
        if value is not None:
            settings[name] = value
    if recipe in ("roberta", "electra") and settings["objective"] != "full":
        raise BertkitError(
            f"--objective {settings['objective']}: {FAMILY_NAMES[recipe]} has no sentence-pair head in "
            "transformers; it pretrains with --objective full"
        )
    return settings


def build_pretraining(
    corpus: list[str],
    preset: str = "bert-mini-chinese",
    init: str | None = None,
    tokenizer_path: str | None = None,
    vocab_size: int = 8000,
    max_seq_length: int = 128,
    objective: Literal["nsp", "sop", "full"] = "nsp",
    masking: str = "token",
    dynamic: bool = False,
    dupe_factor: int = 5,
    eval_fraction: float = 0.02,
    label_smoothing: float = 0.0,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
    generator_size: float = 0.25,
    chunk_tokens: int = 1_000_000,
    **config_overrides,
) -> tuple[BertPretraining, object, PretrainingData, PretrainingData | None]:
    """Everything `pretrain` needs, from a corpus: tokenizer, token shards, model, train/held-out data.

    The tokenizer comes from `init` (continued pretraining of that model), else `tokenizer_path`, else a
    new vocabulary of `vocab_size` trained on the corpus and saved with the model: WordPiece, or byte-level
    BPE for a RoBERTa preset. An ELECTRA preset builds the generator (`generator_size` of its width) and the
    discriminator (`ElectraPretraining`).
    """
    from bertkit.config import PRESETS, from_preset
    from bertkit.hf import check_vocab_fits, load_pretrained
    from bertkit.model import BertEncoder, MLMHead, NSPHead, RTDHead
    from bertkit.pretrain.corpus import read_documents, resolve_corpus
    from bertkit.pretrain.dataset import Vocab, split_documents
    from bertkit.pretrain.masking import MaskingConfig
    from bertkit.pretrain.objectives import ElectraPretraining, electra_generator_config
    from bertkit.pretrain.shards import MarkedDocuments, build_shards, word_starts
    from bertkit.tokenizer import Tokenizer

    if chunk_tokens < 0:
        raise BertkitError(f"--chunk-tokens must be 0 (the whole epoch at once) or more, got {chunk_tokens}")
    if dupe_factor < 1:
        raise BertkitError(f"--dupe-factor must be at least 1 (versions of the masked data), got {dupe_factor}")
    units = {"token": "token", "wwm": "word", "span": "span", "ngram": "ngram"}
    if masking not in units:
        raise BertkitError(f"--masking {masking!r}: choose one of {', '.join(units)}")
    source = resolve_corpus(corpus)
    if init is not None:
        ckpt = load_pretrained(init)
        if ckpt.tokenizer is None:
            raise BertkitError(f"{init}: the model folder has no vocab.txt or tokenizer.json")
        tokenizer, encoder, config = ckpt.tokenizer, ckpt.encoder, ckpt.config
        heads = ckpt.heads
        if config.model_type == "electra":
            raise BertkitError(
                f"{init}: continued ELECTRA pretraining needs its generator too, which --init does not read yet; "
                "fine-tune the discriminator, or pretrain an ELECTRA from scratch"
            )
        if encoder.pooler is None and objective != "full":
            # An MLM-only model (BertForMaskedLM has no pooler) gets a fresh one for NSP / SOP, initialised as
            # a new model's would be, just as its NSP head starts fresh.
            import torch.nn as nn

            from bertkit.model import init_weights

            encoder.pooler = nn.Linear(config.hidden_size, config.hidden_size)
            init_weights(encoder.pooler, config.initializer_range)
            print(f"{init}: the model has no pooler; --objective {objective} trains a new one")
    else:
        family = PRESETS.get(preset, {}).get("model_type", "bert")
        if tokenizer_path is not None:
            from bertkit.vocab import load_tokenizer

            tokenizer = load_tokenizer(tokenizer_path)
        else:
            sentences = (s for doc in read_documents(source) for s in doc)
            if family == "roberta":
                from bertkit.bpe import ByteLevelBPETokenizer

                tokenizer = ByteLevelBPETokenizer.train(sentences, vocab_size=vocab_size)
            else:
                tokenizer = Tokenizer.train(sentences, vocab_size=vocab_size, show_progress=False)
        config = from_preset(
            preset, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, **config_overrides
        )
        # A pooler only where a sentence-level head reads it: BertForMaskedLM & co. have none.
        encoder, heads = BertEncoder(config, add_pooler=objective != "full"), {}
    check_vocab_fits(tokenizer, config, init or "the model")
    if max_seq_length > config.max_length:
        raise BertkitError(
            f"--max-seq-length {max_seq_length} is more than the model's max_position_embeddings ({config.max_length})"
        )
    cache = Path(cache_dir or os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    shards = build_shards(source, tokenizer, cache / "shards", progress=progress)
    train_ids, eval_ids = split_documents(len(shards), eval_fraction, seed)
    vocab = Vocab.of(tokenizer)
    documents = shards
    if units[masking] != "token":  # find the words once per corpus; they then ride along on the token ids
        documents = MarkedDocuments(shards, word_starts(shards, vocab.tokens, progress=progress))
    if not 0.0 <= label_smoothing < 1.0:
        raise BertkitError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    masking_config = MaskingConfig(exact_count=not dynamic)
    if config.model_type == "electra":
        from bertkit.errors import ConfigError

        try:
            gen_config = electra_generator_config(config, generator_size)
        except ConfigError as e:
            raise BertkitError(str(e)) from None
        model = ElectraPretraining(
            BertEncoder(gen_config, add_pooler=False),
            MLMHead(gen_config),
            encoder,
            RTDHead(config),
            label_smoothing=label_smoothing,
        )
        # ELECTRA's masking: 85% [MASK], 15% kept, no random tokens (the generator supplies the replacements).
        masking_config = MaskingConfig(mask_token_prob=0.85, random_token_prob=0.0, exact_count=not dynamic)
    else:
        mlm = heads.get("mlm") or MLMHead(config)
        nsp = None if objective == "full" else (heads.get("nsp") or NSPHead(config))
        model = BertPretraining(encoder, mlm, nsp, label_smoothing=label_smoothing)
    common = dict(
        documents=documents,
        vocab=vocab,
        max_seq_length=max_seq_length,
        objective=objective,
        masking=masking_config,
        unit=units[masking],
        seed=seed,
    )
    train_data = PretrainingData(
        doc_ids=train_ids, dynamic=dynamic, dupe_factor=dupe_factor, chunk_tokens=chunk_tokens, **common
    )
    eval_data = PretrainingData(doc_ids=eval_ids, **common) if len(eval_ids) else None
    return model, tokenizer, train_data, eval_data
