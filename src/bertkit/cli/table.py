"""The command table: each command is a plain function registered with `@command("name")`.

Its parameters become flags: a parameter without a default is positional, `Annotated[T, "help"]` gives the
type and help text, `bool` becomes `--x/--no-x`, `list[T]` takes several values, `Literal[...]` gives
choices. Defaults are shown in `--help`. A `BertkitError` (a user's mistake) prints one line and exits with
code 2.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Literal

from bertkit.errors import BertkitError

COMMANDS: dict[str, Callable] = {}


def command(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


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
    return finish_process(_run(argv))


def _run(argv: list[str] | None) -> int:
    args = vars(build_parser().parse_args(argv))
    fn = args.pop("_fn")
    args.pop("command"), args.pop("subcommand", None)
    try:
        _check_utf8(args)
        fn(**args)
    except BertkitError as e:
        print(f"bertkit: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine said no: a permission, a full disk, a path that is a folder
        if isinstance(e, BrokenPipeError):
            return 0  # `bertkit ... | head`
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"bertkit: error: {where}{e.strerror or e}; check the path, its permissions and the free space",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("bertkit: interrupted", file=sys.stderr)
        return 130
    return 0


def finish_process(code: int) -> int:
    """The exit of a CLI command: `code` as it is in a plain process. Under torchrun the ranks meet at a barrier
    (after a success), destroy the process group and leave by `os._exit`, skipping interpreter finalization.
    Why: a rank whose work was done and written still died of SIGABRT ("terminate called without an active
    exception") at exit, in CI, in session 9 and again in session 10 with `training._leave_process_group`; C++
    threads of the process group (gloo) met a finalizing interpreter (pytorch/pytorch#179291 describes the
    mechanism; mosaicml/streaming#186 synchronises before destroying). Everything bertkit writes is closed and
    renamed into place before this point, and stdout / stderr are flushed here."""
    if "torch.distributed" not in sys.modules:  # never joined a group (and torch may not even be loaded)
        return code
    import torch.distributed as dist

    if not dist.is_initialized():
        return code
    try:
        if code == 0:  # after a failure the other ranks may never arrive; torchrun stops them instead
            dist.barrier()
        dist.destroy_process_group()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _check_utf8(args: dict) -> None:
    """Python hands over command-line bytes that are not UTF-8 as lone surrogates; say which argument."""
    for name, value in args.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    shown = v.encode("utf-8", "replace").decode("utf-8")
                    raise BertkitError(
                        f"{name.replace('_', '-')} {shown!r} is not valid UTF-8; pass UTF-8 text"
                    ) from None
