"""`bertkit pretrain`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, FRACTION, NON_NEGATIVE, SEED, Range, command
from bertkit.errors import BertkitError
from bertkit.pretrain.setup import MASKING_UNITS, OBJECTIVES, RECIPES, recipe_help


@command("pretrain")
def pretrain_cmd(
    *,
    out: Annotated[str, "run folder: model/, checkpoint/, metrics.jsonl, curves.png"],
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    recipe: Annotated[
        Literal[tuple(RECIPES)] | None,
        "a variant's pretraining as its paper has it (RECIPES in pretrain/setup.py; default: the first of the "
        f"preset's family), each flag below overrides it; {recipe_help()}",
    ] = None,
    preset: Annotated[
        str | None, "model family and size for a new model (see `bertkit params`; default: the recipe's)"
    ] = None,
    init: Annotated[str | None, "continue pretraining this model folder (its vocabulary too)"] = None,
    tokenizer: Annotated[str | None, "use this vocab.txt / tokenizer.json / folder instead of training one"] = None,
    vocab_size: Annotated[
        int | None, "size of the vocabulary trained on the corpus (default 8000)", Range(6, 1_000_000)
    ] = None,
    num_hidden_layers: Annotated[int | None, "override the preset's layers", Range(1, 256)] = None,
    hidden_size: Annotated[
        int | None, "override the preset's hidden size (FFN = 4x, a head per 64)", Range(1, 65_536)
    ] = None,
    dropout: Annotated[
        float | None,
        "a new model's hidden and attention dropout (default: the preset's 0.1; 0 for short runs)",
        FRACTION,
    ] = None,
    max_seq_length: Annotated[
        int | None, "tokens per instance, [CLS] and [SEP]s included (default 128)", Range(8, 1 << 20)
    ] = None,
    phases: Annotated[
        list[str] | None,
        "BERT's length schedule instead of one --max-seq-length: LENGTH:FRACTION of the steps, e.g. 32:0.9 "
        "128:0.1; later phases keep the first one's tokens per step (batch x length)",
    ] = None,
    objective: Annotated[
        Literal[OBJECTIVES] | None,
        "MLM plus NSP, plus SOP, or MLM on full sentences (default: the recipe's)",
    ] = None,
    masking: Annotated[
        Literal[tuple(MASKING_UNITS)] | None,
        "what is masked: single tokens; whole words (Chinese words found by --segmenter, English by ##); SpanBERT "
        "spans; ALBERT n-grams of 1-3 words, p(n) ∝ 1/n; ERNIE's phrases (segmenter words) or entities, each "
        "masked as one (default: the recipe's; given, it replaces the ernie recipe's stages)",
    ] = None,
    entities: Annotated[
        str | None,
        "ernie-entity masking: a UTF-8 file of entities, one per line, matched longest-first in each sentence "
        "(default: the built-in peoples-daily corpus's nr / ns / nt tags; other corpora need this file)",
    ] = None,
    segmenter: Annotated[
        str | None,
        "what finds the Chinese words that wwm / span / ngram masking takes whole: jieba, or words:FILE (longest "
        "match over a word list, one word per line) (default: the recipe's, jieba)",
    ] = None,
    tasks: Annotated[
        list[str] | None,
        "ERNIE 2.0's stages, each its tasks joined by commas from knowledge, tdr (token-document relation), reorder "
        "(sentence reordering), distance (sentence distance); an equal share of the steps each (default: the "
        "recipe's, knowledge knowledge,tdr knowledge,tdr,reorder knowledge,tdr,reorder,distance)",
    ] = None,
    dynamic: Annotated[
        bool | None, "fresh masks every epoch (RoBERTa) instead of dupe_factor static copies (default: the recipe's)"
    ] = None,
    generator_size: Annotated[
        float | None,
        "ELECTRA: the generator's width as a fraction of the discriminator's (default: the recipe's, 0.25)",
        Range(0, 1, low_open=True),
    ] = None,
    dupe_factor: Annotated[
        int | None, "static masking: versions of the data, cycled (default: the recipe's, 5)", Range(1, 1000)
    ] = None,
    chunk_tokens: Annotated[
        int,
        "instances are built, shuffled and masked this many corpus tokens at a time, so memory does not grow "
        "with the corpus; 0: the whole epoch at once (shuffled across all of it)",
        NON_NEGATIVE,
    ] = 1_000_000,
    label_smoothing: Annotated[
        float, "mix each one-hot MLM / NSP target with the uniform one (0: off)", FRACTION
    ] = 0.0,
    steps: Annotated[int, "optimizer steps", Range(1, 10**9)] = 1000,
    batch_size: Annotated[int, "sequences per micro-batch", Range(1, 65_536)] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step", Range(1, 65_536)] = 1,
    lr: Annotated[float, "peak learning rate", Range(0, 1, low_open=True)] = 5e-4,
    warmup: Annotated[float, "warm-up: a fraction of steps (<1) or a number of steps", NON_NEGATIVE] = 0.06,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    eval_every: Annotated[int, "evaluate on held-out documents every N steps", COUNT] = 200,
    log_every: Annotated[int, "write a metrics.jsonl row (means over the last N steps) every N steps", COUNT] = 10,
    save_every: Annotated[int, "write a resumable checkpoint every N steps", COUNT] = 500,
    keep_checkpoints: Annotated[int, "keep the newest N checkpoints (OUT/checkpoints/step-*)", COUNT] = 2,
    seed: Annotated[int, "random seed (data, masks, init)", SEED] = 0,
    resume: Annotated[bool, "continue from OUT/checkpoint if it exists"] = False,
    cache_dir: Annotated[
        str | None, "where token shards are cached (default $BERTKIT_CACHE or ~/.cache/bertkit)"
    ] = None,
) -> None:
    """Pretrain BERT, SpanBERT, ERNIE (1.0 and 2.0), ALBERT, RoBERTa or ELECTRA on a corpus; writes a Hugging Face
    folder with the heads.

    ELECTRA's run folder holds the discriminator in OUT/model and the generator in OUT/generator."""
    import torch

    from bertkit.pretrain.corpus import BUILTIN_CORPORA
    from bertkit.pretrain.loop import TrainConfig, pretrain
    from bertkit.pretrain.masking import make_segmenter
    from bertkit.pretrain.runs import check_out_dir, check_resume
    from bertkit.pretrain.setup import build_pretraining, entity_source, resolve_recipe
    from bertkit.training import barrier, distributed

    # Every flag, the run folder and the model's size are checked before the corpus is read: a mistake costs
    # nothing, and nothing is written before all of it holds.
    check_out_dir(out, resume)
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise BertkitError(f"--cache-dir {cache_dir} is a file; give a folder for the token shards")
    _refuse_ignored_flags(
        init=init, tokenizer=tokenizer, preset=preset, vocab_size=vocab_size, num_hidden_layers=num_hidden_layers,
        hidden_size=hidden_size, dropout=dropout,
    )  # fmt: skip
    flags = dict(objective=objective, masking=masking, dynamic=dynamic, dupe_factor=dupe_factor)
    flags |= dict(generator_size=generator_size, segmenter=segmenter, entities=entities)
    flags["tasks"] = tuple(tuple(t.strip() for t in stage.split(",")) for stage in tasks) if tasks else None
    row = resolve_recipe(recipe, preset, init, **flags)
    words = None
    if row.needs_words:  # the word file is read now: a missing or empty one costs nothing
        words = make_segmenter(row.segmenter).spec
        if words.startswith("words:"):
            words = "words:" + str(Path(words.removeprefix("words:")).resolve())
    if "ernie-entity" in row.units:  # so is the entity file (or the corpus found to have no tags)
        entity_source(row.entities, corpus)
    rank, world = distributed()  # (0, 1) unless started by torchrun

    torch.manual_seed(seed)
    overrides = {k: v for k, v in {"num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size}.items() if v}
    if hidden_size:
        overrides["intermediate_size"] = 4 * hidden_size
        overrides["num_attention_heads"] = max(1, hidden_size // 64)
    if dropout is not None:
        overrides["hidden_dropout_prob"] = overrides["attention_probs_dropout_prob"] = dropout
    schedule = _parse_phases(phases) if phases else ()
    if schedule and max_seq_length is not None:
        raise BertkitError("--max-seq-length and --phases both set the length; give one of them")
    max_seq_length = max(n for n, _ in schedule) if schedule else (max_seq_length or 128)
    _check_model_fits(init, row.preset, vocab_size or 8000, overrides, max_seq_length, "--phases" if schedule else None)
    # The recipe's stages (masking units or ERNIE 2.0's tasks) take equal shares of the steps, across the length
    # schedule: a phase of the loop is a stretch at one length and one stage.
    stages = row.stages or row.tasks
    pieces = stage_phases(schedule or ((max_seq_length, 1.0),), len(stages)) if stages else ()
    run_settings = {  # what the run is: a --resume must give the same, or it would continue another run
        "corpus": [c if c in BUILTIN_CORPORA else str(Path(c).resolve()) for c in corpus],
        "recipe": row.name,
        **{k: getattr(row, k) for k in ("preset", "objective", "masking", "dynamic")},
        **({"stages": list(row.stages)} if row.stages else {}),
        **({"tasks": [list(t) for t in row.tasks]} if row.tasks else {}),
        **({"entities": str(Path(row.entities).resolve())} if row.entities else {}),
        "segmenter": words,
        "init": init and str(Path(init).resolve()),
        "tokenizer": tokenizer and str(Path(tokenizer).resolve()),
        "vocab_size": vocab_size,
        "num_hidden_layers": num_hidden_layers,
        "hidden_size": hidden_size,
        "dropout": dropout,
        "max_seq_length": max_seq_length,
        "phases": [list(p) for p in schedule],
        "generator_size": generator_size,
        "dupe_factor": dupe_factor,
        "chunk_tokens": chunk_tokens,
        "label_smoothing": label_smoothing,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr,
        "warmup": warmup,
        "seed": seed,
    }
    if resume:
        check_resume(out, steps, run_settings)
    cfg = TrainConfig(
        out_dir=out,
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        warmup=warmup,
        precision=precision,
        seed=seed,
        eval_every=eval_every,
        log_every=log_every,
        save_every=save_every,
        keep_checkpoints=keep_checkpoints,
        beta2=row.beta2,
        progress=True,
        phases=tuple((n, f) for n, f, _ in pieces) or schedule,
        phase_units=tuple(MASKING_UNITS[row.stages[k]] for _, _, k in pieces) if row.stages else (),
        phase_tasks=tuple(row.tasks[k] for _, _, k in pieces) if row.tasks else (),
        copy_positions=init is None,  # a model of ours from scratch: its longer positions were never trained
        settings=run_settings,
    )
    if rank != 0:
        barrier(world)  # rank 0 builds the token shards first; the others then find them in the cache
    model, tok, train_data, eval_data = build_pretraining(
        corpus,
        row,
        init=init,
        tokenizer_path=tokenizer,
        vocab_size=vocab_size or 8000,
        max_seq_length=max_seq_length,
        label_smoothing=label_smoothing,
        seed=seed,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
        chunk_tokens=chunk_tokens,
        **overrides,
    )
    if rank == 0:
        barrier(world)
    n_params = sum(p.numel() for p in model.parameters())
    say = print if rank == 0 else (lambda *a, **k: None)
    c = model.encoder.config
    say(
        f"recipe {row.name}: {c.model_type} {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"vocab {tok.vocab_size}, {n_params:,} parameters; objective {row.objective}, masking "
        + (" → ".join(row.stages) if row.stages else row.masking)
        + (f"; tasks {' → '.join('+'.join(t) for t in row.tasks)}" if row.tasks else "")
        + (f" ({row.segmenter} words)" if words else "")
        + (" (dynamic)" if row.dynamic else "")
        + f"; {len(train_data.doc_ids)} training documents"
    )
    summary = pretrain(model, tok, train_data, eval_data, cfg, resume=resume)
    ev = summary["eval"]
    if "cloze_accuracy" in ev:  # the objective's other held-out figures are in metrics.jsonl
        say(
            f"held-out MLM accuracy at [MASK] {ev['cloze_accuracy']:.3f} "
            f"(unigram baseline {ev['unigram_accuracy']:.3f}), "
            f"loss {ev['mlm_loss']:.3f}"
            + (f", {row.objective.upper()} accuracy {ev['nsp_accuracy']:.3f}" if "nsp_accuracy" in ev else "")
            + (
                f", replaced-token detection accuracy {ev['rtd_accuracy']:.3f}, recall {ev.get('rtd_recall', 0):.3f}"
                if "rtd_accuracy" in ev
                else ""
            )
        )
    if "lm_loss" in ev:
        say(
            f"held-out next-token accuracy {ev['lm_accuracy']:.3f}, loss {ev['lm_loss']:.3f} "
            f"(perplexity {math.exp(min(ev['lm_loss'], 700)):,.1f})"
        )
    say(
        f"model: {summary['model']}"
        + (f"  generator: {summary['generator']}" if "generator" in summary else "")
        + f"  curves: {out}/curves.png  log: {out}/metrics.jsonl"
    )


def stage_phases(schedule: tuple[tuple[int, float], ...], n: int) -> tuple[tuple[int, float, int], ...]:
    """(length, fraction, stage) stretches: the length schedule cut where `n` equal stages change, so a stretch
    has one length and one stage (lengths 64:0.9 128:0.1 and 2 stages: 64 for 0.5 in stage 0, 64 for 0.4 and 128
    for 0.1 in stage 1)."""
    ends, done = [], 0.0
    for _, f in schedule:
        done += f
        ends.append(done)
    cuts = sorted({round(x, 9) for x in [k / n for k in range(1, n)] + ends[:-1]} | {1.0})
    pieces, start = [], 0.0
    for end in cuts:
        mid = (start + end) / 2
        length = next(length for (length, _), e in zip(schedule, ends, strict=True) if mid < e or e == ends[-1])
        pieces.append((length, end - start, min(n - 1, int(mid * n))))
        start = end
    return tuple(pieces)


def _parse_phases(phases: list[str]) -> tuple[tuple[int, float], ...]:
    out = []
    for item in phases:
        length, colon, fraction = item.partition(":")
        try:
            out.append((int(length), float(fraction)))
        except ValueError:
            raise BertkitError(f"--phases {item!r}: write LENGTH:FRACTION, e.g. 32:0.9 128:0.1") from None
        if not colon:
            raise BertkitError(f"--phases {item!r}: write LENGTH:FRACTION, e.g. 32:0.9 128:0.1")
    return tuple(out)


def _refuse_ignored_flags(*, init, tokenizer, preset, **model_flags) -> None:
    """A flag that this mode would ignore is an error that names the mode: the user meant something by it."""
    if init is not None:
        given = {"tokenizer": tokenizer, "preset": preset, **model_flags}
        for name, value in given.items():
            if value is not None:
                raise BertkitError(
                    f"--{name.replace('_', '-')}: --init continues {init} with its own architecture, vocabulary "
                    "and dropout (its config.json); leave the flag out, or pretrain a new model without --init"
                )
    if tokenizer is not None and model_flags["vocab_size"] is not None:
        raise BertkitError("--vocab-size sizes a vocabulary trained on the corpus; --tokenizer gives one already")


def _check_model_fits(init, preset, vocab_size, overrides, max_seq_length, length_flag) -> None:
    """The model these flags build, checked before any data is read: its config (an override the preset cannot
    take), its length against the position table, and its training memory against this machine's."""
    import os

    import torch

    from bertkit.config import BertConfig, from_preset
    from bertkit.errors import ConfigError
    from bertkit.model import BertEncoder

    if init is not None:
        config_file = Path(init) / "config.json"
        if not config_file.is_file():
            raise BertkitError(f"--init {init}: no config.json there; give a model folder")
        config = BertConfig.from_json(config_file)
    else:
        try:
            config = from_preset(preset, vocab_size=vocab_size, **overrides)
        except ConfigError as e:
            raise BertkitError(f"{e} (from --num-hidden-layers / --hidden-size on preset {preset})") from None
    if max_seq_length > config.max_length:
        flag = f"--phases' longest length {max_seq_length}" if length_flag else f"--max-seq-length {max_seq_length}"
        raise BertkitError(f"{flag} is more than the model's max_position_embeddings ({config.max_length})")
    with torch.device("meta"):
        n = sum(p.numel() for p in BertEncoder(config).parameters())
    need = 16 * n  # fp32 weights, gradients and Adam's two moments; activations come on top
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise BertkitError(
            f"the model has {n:,} parameters: training it needs at least {need / 2**30:.0f} GiB and this machine has "
            f"{have / 2**30:.0f} GiB; make it smaller (--hidden-size, --num-hidden-layers, --preset)"
        )
