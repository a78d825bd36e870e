"""`bertkit <command>`: a table of subcommands whose flags come from typed function signatures.

Each command is a plain function registered with `@command("name")`. Its parameters become flags:
a parameter without a default is positional, `Annotated[T, "help"]` gives the type and help text,
`bool` becomes `--x/--no-x`, `list[T]` takes several values, `Literal[...]` gives choices. Defaults are
shown in `--help`. A `BertkitError` (a user's mistake) prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from bertkit.errors import BertkitError

COMMANDS: dict[str, Callable] = {}


def command(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


# ------------------------------------------------------------------------------------------ commands


@command("params")
def params_cmd(
    model: Annotated[str, "a preset name (bert-base, bert-base-chinese, ...) or a model folder"],
    heads: Annotated[list[str], "heads to count with a preset: mlm, nsp, classifier"] = [],  # noqa: B006
    num_labels: Annotated[int, "labels for a classifier head"] = 2,
) -> None:
    """Count parameters by component: embeddings, each layer's attention / FFN / LayerNorm, pooler, heads."""
    import torch

    from bertkit.config import PRESETS, from_preset
    from bertkit.hf import build_heads, load_pretrained
    from bertkit.model import BertEncoder, parameter_table

    if model in PRESETS:
        labels = {i: f"LABEL_{i}" for i in range(num_labels)} if "classifier" in heads else {}
        config = from_preset(model, id2label=labels)
        with torch.device("meta"):  # count without allocating: bert-large is 1.3 GB in fp32
            modules = {"encoder": BertEncoder(config), **build_heads(config, heads)}
        title = f"{model} (preset)"
    elif Path(model).exists():
        ckpt = load_pretrained(model, tokenizer=False)
        modules, config, title = ckpt.modules(), ckpt.config, str(model)
    else:
        raise BertkitError(f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a folder")
    rows = parameter_table(modules)
    total = sum(n for _, n in rows)
    print(
        f"{title}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, FFN {config.intermediate_size}, vocab {config.vocab_size}"
    )
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>13,}  {100 * n / total:5.1f}%")
    print(f"  {'total':<{width}}  {total:>13,}")


@command("tokenize")
def tokenize_cmd(
    text: Annotated[str, "the text to tokenize"],
    *,
    model: Annotated[str, "a model folder, or a vocab.txt / tokenizer.json file"],
    pair: Annotated[str | None, "a second text: [CLS] A [SEP] B [SEP]"] = None,
    max_length: Annotated[int | None, "truncate to this many tokens (longest first for pairs)"] = None,
) -> None:
    """Show the word pieces, ids and segment ids BERT sees for a text (or a pair)."""
    tok = load_tokenizer(model)
    enc = tok.encode(text, pair, max_length=max_length)
    width = max(len(t) for t in enc.tokens)
    print(f"{len(enc.ids)} tokens")
    for i, (t, idx, seg, (a, b)) in enumerate(zip(enc.tokens, enc.ids, enc.token_type_ids, enc.offsets, strict=True)):
        print(f"  {i:>4}  {t:<{width}}  {idx:>6}  segment {seg}  chars {a}:{b}")
    print("ids:", " ".join(map(str, enc.ids)))


@command("tokenizer train")
def tokenizer_train_cmd(
    files: Annotated[list[str], "text files, one or more sentences per line"],
    *,
    out: Annotated[str, "folder to write vocab.txt, tokenizer.json and tokenizer_config.json"],
    vocab_size: Annotated[int, "vocabulary size including the 5 special tokens"] = 21128,
    min_frequency: Annotated[int, "drop pieces seen fewer times than this"] = 2,
    lowercase: Annotated[bool, "lower-case and strip accents (uncased model)"] = True,
) -> None:
    """Train a WordPiece vocabulary (CJK-aware: one token per Chinese character) from text files."""
    from bertkit.tokenizer import Tokenizer

    for f in files:
        if not Path(f).is_file():
            raise BertkitError(f"{f}: no such file")
    tok = Tokenizer.train(
        files,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        lowercase=lowercase,
        show_progress=sys.stderr.isatty(),
    )
    tok.save(out)
    print(f"wrote {out}/vocab.txt with {tok.vocab_size} tokens")


@command("pretrain")
def pretrain_cmd(
    *,
    out: Annotated[str, "run folder: model/, checkpoint/, metrics.jsonl, curves.png"],
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    preset: Annotated[str, "model size for a new model (see `bertkit params`)"] = "bert-mini-chinese",
    init: Annotated[str | None, "continue pretraining this model folder (its vocabulary too)"] = None,
    tokenizer: Annotated[str | None, "use this vocab.txt / tokenizer.json / folder instead of training one"] = None,
    vocab_size: Annotated[int, "size of the WordPiece vocabulary trained on the corpus"] = 8000,
    num_hidden_layers: Annotated[int | None, "override the preset's layers"] = None,
    hidden_size: Annotated[int | None, "override the preset's hidden size (FFN = 4x)"] = None,
    max_seq_length: Annotated[int, "tokens per instance, [CLS] and [SEP]s included"] = 128,
    objective: Annotated[Literal["nsp", "sop", "full"], "MLM plus NSP, plus SOP, or MLM on full sentences"] = "nsp",
    masking: Annotated[Literal["token"], "what is masked: single tokens"] = "token",
    dynamic: Annotated[bool, "fresh masks every epoch (RoBERTa) instead of dupe_factor static copies"] = False,
    dupe_factor: Annotated[int, "static masking: versions of the data, cycled"] = 5,
    steps: Annotated[int, "optimizer steps"] = 1000,
    batch_size: Annotated[int, "sequences per micro-batch"] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step"] = 1,
    lr: Annotated[float, "peak learning rate"] = 5e-4,
    warmup: Annotated[float, "warm-up: a fraction of steps (<1) or a number of steps"] = 0.06,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    eval_every: Annotated[int, "evaluate on held-out documents every N steps"] = 200,
    save_every: Annotated[int, "write a resumable checkpoint every N steps"] = 500,
    seed: Annotated[int, "random seed (data, masks, init)"] = 0,
    resume: Annotated[bool, "continue from OUT/checkpoint if it exists"] = False,
    cache_dir: Annotated[
        str | None, "where token shards are cached (default $BERTKIT_CACHE or ~/.cache/bertkit)"
    ] = None,
) -> None:
    """Pretrain BERT (MLM + NSP) on a corpus; writes a Hugging Face folder with the MLM and NSP heads."""
    import torch

    from bertkit.train import TrainConfig, build_pretraining, pretrain

    torch.manual_seed(seed)
    overrides = {k: v for k, v in {"num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size}.items() if v}
    if hidden_size:
        overrides["intermediate_size"] = 4 * hidden_size
        overrides["num_attention_heads"] = max(1, hidden_size // 64)
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
        save_every=save_every,
        beta2=0.98 if dynamic else 0.999,
        progress=sys.stderr.isatty(),
    )
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
        seed=seed,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
        **overrides,
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {model.encoder.config.num_hidden_layers} layers, hidden {model.encoder.config.hidden_size}, "
        f"vocab {tok.vocab_size}, {n_params:,} parameters; {len(train_data.doc_ids)} training documents"
    )
    summary = pretrain(model, tok, train_data, eval_data, cfg, resume=resume)
    ev = summary["eval"]
    if ev:
        print(
            f"held-out MLM accuracy {ev['mlm_accuracy']:.3f} (unigram baseline {ev['unigram_accuracy']:.3f}), "
            f"loss {ev['mlm_loss']:.3f}" + (f", NSP accuracy {ev['nsp_accuracy']:.3f}" if "nsp_accuracy" in ev else "")
        )
    print(f"model: {summary['model']}  curves: {out}/curves.png  log: {out}/metrics.jsonl")


@command("fill-mask")
def fill_mask_cmd(
    model: Annotated[str, "a model folder with an MLM head"],
    texts: Annotated[list[str], "texts with one or more [MASK] tokens, e.g. 巴黎是[MASK]国的首都。"],
    top_k: Annotated[int, "predictions shown per [MASK]"] = 5,
) -> None:
    """Top-k predictions for each [MASK] in a text, from any MLM checkpoint."""
    from bertkit.inference import fill_mask

    for text in texts:
        results = fill_mask(model, text, top_k=top_k)
        print(text)
        for i, candidates in enumerate(results):
            shown = "  ".join(f"{tok} {p:.3f}" for tok, p in candidates)
            print(f"  [MASK] #{i + 1}: {shown}")


def load_tokenizer(path: str):
    """A model folder, a vocab.txt or a tokenizer.json."""
    from bertkit.tokenizer import Tokenizer

    p = Path(path)
    if p.is_dir():
        return Tokenizer.from_folder(p)
    if p.is_file():
        return Tokenizer.from_file(p) if p.suffix == ".json" else Tokenizer.from_vocab(p)
    raise BertkitError(f"{path}: no such folder or file (expected a model folder, vocab.txt or tokenizer.json)")


# ------------------------------------------------------------------------------------- the machinery


def _add_flags(parser: argparse.ArgumentParser, fn: Callable) -> None:
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, param in inspect.signature(fn).parameters.items():
        hint = hints[name]
        help_text = ""
        if typing.get_origin(hint) is Annotated:
            hint, help_text = typing.get_args(hint)[0], typing.get_args(hint)[1]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # `int | None` -> int
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        kwargs: dict = {"help": help_text}
        if typing.get_origin(hint) is list:
            kwargs.update(nargs="+" if param.default is inspect.Parameter.empty else "*", type=typing.get_args(hint)[0])
        elif typing.get_origin(hint) is Literal:
            kwargs.update(choices=list(typing.get_args(hint)), type=type(typing.get_args(hint)[0]))
        elif hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs.update(type=hint)
        flag = "--" + name.replace("_", "-")
        if param.default is not inspect.Parameter.empty:
            parser.add_argument(flag, dest=name, default=param.default, **kwargs)
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:  # after `*`: a required flag
            parser.add_argument(flag, dest=name, required=True, **kwargs)
        else:
            parser.add_argument(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit", description="Pretrain, fine-tune and serve BERT encoders.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, fn in COMMANDS.items():
        doc = (fn.__doc__ or "").strip()
        *group, leaf = name.split()
        target = sub
        if group:  # "tokenizer train" -> `bertkit tokenizer train`
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=f"{group[0]} commands")
                groups[group[0]] = gp.add_subparsers(dest="subcommand", required=True, metavar="<subcommand>")
            target = groups[group[0]]
        p = target.add_parser(
            leaf,
            help=doc.splitlines()[0] if doc else "",
            description=doc,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.set_defaults(_fn=fn)
        _add_flags(p, fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    fn = args.pop("_fn")
    args.pop("command"), args.pop("subcommand", None)
    try:
        fn(**args)
    except BertkitError as e:
        print(f"bertkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bertkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bertkit ... | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
