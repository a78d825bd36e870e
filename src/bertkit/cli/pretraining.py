"""`bertkit pretrain`."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from bertkit.cli.table import command
from bertkit.errors import BertkitError


@command("pretrain")
def pretrain_cmd(
    *,
    out: Annotated[str, "run folder: model/, checkpoint/, metrics.jsonl, curves.png"],
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    recipe: Annotated[
        Literal["bert", "albert", "roberta", "electra"] | None,
        "the family's pretraining as its paper has it (default: the preset's family); each flag below overrides it",
    ] = None,
    preset: Annotated[
        str | None, "model family and size for a new model (see `bertkit params`; default: the recipe's)"
    ] = None,
    init: Annotated[str | None, "continue pretraining this model folder (its vocabulary too)"] = None,
    tokenizer: Annotated[str | None, "use this vocab.txt / tokenizer.json / folder instead of training one"] = None,
    vocab_size: Annotated[int, "size of the WordPiece vocabulary trained on the corpus"] = 8000,
    num_hidden_layers: Annotated[int | None, "override the preset's layers"] = None,
    hidden_size: Annotated[int | None, "override the preset's hidden size (FFN = 4x)"] = None,
    dropout: Annotated[
        float | None, "a new model's hidden and attention dropout (default: the preset's 0.1; 0 for short runs)"
    ] = None,
    max_seq_length: Annotated[int | None, "tokens per instance, [CLS] and [SEP]s included (default 128)"] = None,
    phases: Annotated[
        list[str] | None,
        "BERT's length schedule instead of one --max-seq-length: LENGTH:FRACTION of the steps, e.g. 32:0.9 "
        "128:0.1; later phases keep the first one's tokens per step (batch x length)",
    ] = None,
    objective: Annotated[
        Literal["nsp", "sop", "full"] | None,
        "MLM plus NSP, plus SOP, or MLM on full sentences (default: the recipe's)",
    ] = None,
    masking: Annotated[
        Literal["token", "wwm", "span", "ngram"] | None,
        "what is masked: single tokens; whole words (Chinese words found by jieba, English by ##); SpanBERT "
        "spans; ALBERT n-grams of 1-3 words, p(n) ∝ 1/n (default: the recipe's)",
    ] = None,
    dynamic: Annotated[
        bool | None, "fresh masks every epoch (RoBERTa) instead of dupe_factor static copies (default: the recipe's)"
    ] = None,
    generator_size: Annotated[float, "ELECTRA: the generator's width as a fraction of the discriminator's"] = 0.25,
    dupe_factor: Annotated[int, "static masking: versions of the data, cycled"] = 5,
    chunk_tokens: Annotated[
        int,
        "instances are built, shuffled and masked this many corpus tokens at a time, so memory does not grow "
        "with the corpus; 0: the whole epoch at once (shuffled across all of it)",
    ] = 1_000_000,
    label_smoothing: Annotated[float, "mix each one-hot MLM / NSP target with the uniform one (0: off)"] = 0.0,
    steps: Annotated[int, "optimizer steps"] = 1000,
    batch_size: Annotated[int, "sequences per micro-batch"] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step"] = 1,
    lr: Annotated[float, "peak learning rate"] = 5e-4,
    warmup: Annotated[float, "warm-up: a fraction of steps (<1) or a number of steps"] = 0.06,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    eval_every: Annotated[int, "evaluate on held-out documents every N steps"] = 200,
    log_every: Annotated[int, "write a metrics.jsonl row (means over the last N steps) every N steps"] = 10,
    save_every: Annotated[int, "write a resumable checkpoint every N steps"] = 500,
    keep_checkpoints: Annotated[int, "keep the newest N checkpoints (OUT/checkpoints/step-*)"] = 2,
    seed: Annotated[int, "random seed (data, masks, init)"] = 0,
    resume: Annotated[bool, "continue from OUT/checkpoint if it exists"] = False,
    cache_dir: Annotated[
        str | None, "where token shards are cached (default $BERTKIT_CACHE or ~/.cache/bertkit)"
    ] = None,
) -> None:
    """Pretrain BERT, ALBERT, RoBERTa or ELECTRA on a corpus; writes a Hugging Face folder with the heads.

    ELECTRA's run folder holds the discriminator in OUT/model and the generator in OUT/generator."""
    import torch

    from bertkit.pretrain.loop import TrainConfig, check_out_dir, pretrain
    from bertkit.pretrain.setup import build_pretraining, resolve_recipe
    from bertkit.training import barrier, distributed

    check_out_dir(out, resume)  # before the corpus is read: a mistake costs nothing
    settings = resolve_recipe(recipe, preset, init, objective, masking, dynamic)
    preset, objective, masking, dynamic = (settings[k] for k in ("preset", "objective", "masking", "dynamic"))
    rank, world = distributed()  # (0, 1) unless started by torchrun

    torch.manual_seed(seed)
    overrides = {k: v for k, v in {"num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size}.items() if v}
    if hidden_size:
        overrides["intermediate_size"] = 4 * hidden_size
        overrides["num_attention_heads"] = max(1, hidden_size // 64)
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise BertkitError(f"--dropout must be in [0, 1), got {dropout}")
        if init is not None:
            raise BertkitError("--dropout sets a new model's dropout; with --init the model's config.json decides")
        overrides["hidden_dropout_prob"] = overrides["attention_probs_dropout_prob"] = dropout
    schedule = _parse_phases(phases) if phases else ()
    if schedule and max_seq_length is not None:
        raise BertkitError("--max-seq-length and --phases both set the length; give one of them")
    max_seq_length = max(n for n, _ in schedule) if schedule else (max_seq_length or 128)
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
        beta2=settings["beta2"],
        progress=True,
        phases=schedule,
        copy_positions=init is None,  # a model of ours from scratch: its longer positions were never trained
    )
    if rank != 0:
        barrier(world)  # rank 0 builds the token shards first; the others then find them in the cache
    model, tok, train_data, eval_data = build_pretraining(
        corpus,
        preset=preset,
        init=init,
        tokenizer_path=tokenizer,
        vocab_size=vocab_size,
        max_seq_length=max_seq_length,
        objective=objective,
        masking=masking,
        dynamic=dynamic,
        dupe_factor=dupe_factor,
        label_smoothing=label_smoothing,
        seed=seed,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
        generator_size=generator_size,
        chunk_tokens=chunk_tokens,
        **overrides,
    )
    if rank == 0:
        barrier(world)
    n_params = sum(p.numel() for p in model.parameters())
    say = print if rank == 0 else (lambda *a, **k: None)
    c = model.encoder.config
    say(
        f"recipe {settings['recipe']}: {c.model_type} {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"vocab {tok.vocab_size}, {n_params:,} parameters; objective {objective}, masking {masking}"
        + (" (dynamic)" if dynamic else "")
        + f"; {len(train_data.doc_ids)} training documents"
    )
    summary = pretrain(model, tok, train_data, eval_data, cfg, resume=resume)
    ev = summary["eval"]
    if ev:
        say(
            f"held-out MLM accuracy at [MASK] {ev['cloze_accuracy']:.3f} "
            f"(unigram baseline {ev['unigram_accuracy']:.3f}), "
            f"loss {ev['mlm_loss']:.3f}"
            + (f", {objective.upper()} accuracy {ev['nsp_accuracy']:.3f}" if "nsp_accuracy" in ev else "")
            + (
                f", replaced-token detection accuracy {ev['rtd_accuracy']:.3f}, recall {ev['rtd_recall']:.3f}"
                if "rtd_accuracy" in ev
                else ""
            )
        )
    say(
        f"model: {summary['model']}"
        + (f"  generator: {summary['generator']}" if "generator" in summary else "")
        + f"  curves: {out}/curves.png  log: {out}/metrics.jsonl"
    )


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
