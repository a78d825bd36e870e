"""Everything a pretraining run needs, from a corpus: the tokenizer (trained, given, or the `--init` model's),
the token shards, the model with its heads, and the training and held-out data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from bertkit.errors import BertkitError
from bertkit.pretrain.dataset import PretrainingData
from bertkit.pretrain.objectives import BertPretraining


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
    **config_overrides,
) -> tuple[BertPretraining, object, PretrainingData, PretrainingData | None]:
    """Everything `pretrain` needs, from a corpus: tokenizer, token shards, model, train/held-out data.

    The tokenizer comes from `init` (continued pretraining of that model), else `tokenizer_path`, else a
    new WordPiece vocabulary of `vocab_size` trained on the corpus and saved with the model.
    """
    from bertkit.config import from_preset
    from bertkit.hf import check_vocab_fits, load_pretrained
    from bertkit.model import BertEncoder, MLMHead, NSPHead
    from bertkit.pretrain.corpus import read_documents, resolve_corpus
    from bertkit.pretrain.dataset import Vocab, split_documents
    from bertkit.pretrain.masking import MaskingConfig
    from bertkit.pretrain.shards import MarkedDocuments, build_shards, word_starts
    from bertkit.tokenizer import Tokenizer

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
        if encoder.pooler is None and objective != "full":
            raise BertkitError(f"{init}: the model has no pooler, which --objective {objective} needs")
    else:
        if tokenizer_path is not None:
            from bertkit.vocab import load_tokenizer

            tokenizer = load_tokenizer(tokenizer_path)
        else:
            sentences = (s for doc in read_documents(source) for s in doc)
            tokenizer = Tokenizer.train(sentences, vocab_size=vocab_size, show_progress=False)
        config = from_preset(preset, vocab_size=tokenizer.vocab_size, **config_overrides)
        encoder, heads = BertEncoder(config), {}
    check_vocab_fits(tokenizer, config, init or "the model")
    if max_seq_length > config.max_length:
        raise BertkitError(
            f"--max-seq-length {max_seq_length} is more than the model's max_position_embeddings "
            f"({config.max_length})"
        )
    cache = Path(cache_dir or os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    shards = build_shards(source, tokenizer, cache / "shards", progress=progress)
    train_ids, eval_ids = split_documents(len(shards), eval_fraction, seed)
    vocab = Vocab.of(tokenizer)
    documents = shards
    if units[masking] != "token":  # find the words once per corpus; they then ride along on the token ids
        documents = MarkedDocuments(shards, word_starts(shards, vocab.tokens, progress=progress))
    mlm = heads.get("mlm") or MLMHead(config)
    nsp = None if objective == "full" else (heads.get("nsp") or NSPHead(config))
    if not 0.0 <= label_smoothing < 1.0:
        raise BertkitError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    model = BertPretraining(encoder, mlm, nsp, label_smoothing=label_smoothing)
    common = dict(
        documents=documents,
        vocab=vocab,
        max_seq_length=max_seq_length,
        objective=objective,
        masking=MaskingConfig(exact_count=not dynamic),
        unit=units[masking],
        seed=seed,
    )
    train_data = PretrainingData(doc_ids=train_ids, dynamic=dynamic, dupe_factor=dupe_factor, **common)
    eval_data = PretrainingData(doc_ids=eval_ids, **common) if len(eval_ids) else None
    return model, tokenizer, train_data, eval_data
