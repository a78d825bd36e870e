"""The command table: each command is a plain function registered with `@command("name")`.

Its parameters become flags: a parameter without a default is positional, `Annotated[T, "help"]` gives the
type and help text, `bool` becomes `--x/--no-x`, `list[T]` takes several values, `Literal[...]` gives
choices. Defaults are shown in `--help`. A `BertkitError` (a user's mistake) prints one line and exits with
code 2, and so does a value the parser refuses.

One rule for numbers: every `int` and `float` flag is checked as the command line is read, so that no command
starts work on a value it cannot honour. A float must be finite (NaN and inf are never a setting), an int a
whole number; `Annotated[T, "help", Range(...)]` adds the flag's bounds, and `Range(..., distinct=True)` on a
list refuses a value given twice (two runs of one seed, two grid points of one rate). The bounds are data, so
the fuzzer in the tests draws values at and beyond every edge from the same table.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from bertkit.errors import BertkitError
from bertkit.threads import configure, stop_following

COMMANDS: dict[str, Callable] = {}


def command(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


# ------------------------------------------------------------------------------------------ numbers
@dataclass(frozen=True)
class Range:
    """The values a numeric flag takes: `low` / `high` (None: unbounded), each included unless `*_open`.
    `distinct`: a list flag refuses a value given twice."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    distinct: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.low is None or (x > self.low if self.low_open else x >= self.low)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def describe(self) -> str:
        low, high = _shown(self.low), _shown(self.high)
        if self.high is None:
            return f"more than {low}" if self.low_open else "0 or more" if self.low == 0 else f"at least {low}"
        if self.low is None:
            return f"less than {high}" if self.high_open else f"at most {high}"
        if isinstance(self.low, int) and isinstance(self.high, int) and not (self.low_open or self.high_open):
            return f"in {low}..{high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


COUNT = Range(1)  # steps, batch sizes, lengths: a whole number of at least 1
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)  # dropout, label smoothing
SEED = Range(0, 2**32 - 1)  # what numpy's and Python's generators take


def _shown(x: float | None) -> str:
    return f"{x:,}" if isinstance(x, int) and abs(x) >= 10_000 else f"{x:g}" if isinstance(x, float) else str(x)


def number(kind: type, limits: Range | None) -> Callable[[str], float]:
    """argparse's `type=` for a numeric flag: a finite number of `kind` within `limits`, else a message."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if limits is not None and value not in limits:
            raise argparse.ArgumentTypeError(f"must be {limits.describe()}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


# ------------------------------------------------------------------------------------- the machinery
class Parser(argparse.ArgumentParser):
    """argparse, with its refusals raised as one-line `BertkitError`s instead of usage text and exit(2)."""

    def error(self, message: str):
        command = self.prog.removeprefix("bertkit").strip()
        message = re.sub(r"^argument (\S+): must be", r"\1 must be", message).removeprefix("argument ")
        raise BertkitError(f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)")


def _unwrap(hint) -> tuple[object, str, Range | None]:
    """(type, help, bounds) of a parameter's hint: `Annotated`'s help text and `Range` taken off, `T | None` -> T."""
    help_text, limits = "", None
    if typing.get_origin(hint) is Annotated:
        hint, help_text, *extra = typing.get_args(hint)
        limits = next((x for x in extra if isinstance(x, Range)), None)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint, help_text, limits


def _add_flags(parser: argparse.ArgumentParser, fn: Callable) -> None:
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, param in inspect.signature(fn).parameters.items():
        hint, help_text, limits = _unwrap(hints[name])
        kwargs: dict = {"help": f"{help_text} [{limits.describe()}]" if limits else help_text}
        if typing.get_origin(hint) is list:
            item = typing.get_args(hint)[0]
            kwargs.update(
                nargs="+" if param.default is inspect.Parameter.empty else "*",
                type=number(item, limits) if item in (int, float) else item,
            )
            if limits is not None and limits.distinct:
                kwargs["action"] = _Distinct
        elif typing.get_origin(hint) is Literal:
            kwargs.update(choices=list(typing.get_args(hint)), type=type(typing.get_args(hint)[0]))
        elif hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif hint in (int, float):
            kwargs.update(type=number(hint, limits))
        else:
            kwargs.update(type=hint)
        flag = "--" + name.replace("_", "-")
        if param.default is not inspect.Parameter.empty:
            parser.add_argument(flag, dest=name, default=param.default, **kwargs)
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:  # after `*`: a required flag
            parser.add_argument(flag, dest=name, required=True, **kwargs)
        else:
            parser.add_argument(name, **kwargs)


class _Distinct(argparse.Action):
    """A list flag whose values must differ: `--seeds 0 0` would run and report one seed twice."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = set()
        for v in values:
            if v in seen:
                parser.error(f"{option_string} {v:g} is given twice; each value runs once")
            seen.add(v)
        setattr(namespace, self.dest, values)


def flag_limits(fn: Callable) -> dict[str, tuple[type, Range | None]]:
    """Each numeric flag of a command with its type and bounds (`int` / `float`, `Range` or None): what the
    parser checks, for the fuzzer in the tests to draw values at and beyond."""
    found = {}
    for name, hint in typing.get_type_hints(fn, include_extras=True).items():
        hint, _, limits = _unwrap(hint)
        if typing.get_origin(hint) is list:
            hint = typing.get_args(hint)[0]
        if hint in (int, float):
            found[name] = (hint, limits)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bertkit", description="Pretrain, fine-tune and serve BERT encoders.")
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
        if "threads" in inspect.signature(fn).parameters:  # a command with its own --threads (word2vec's)
            continue
        p.add_argument(
            "--threads",
            dest="_threads",
            type=thread_count,
            default=None,
            metavar="N",
            help="compute threads, or auto: the cores other processes leave free, followed while it runs "
            "(default: OMP_NUM_THREADS if set, else the cores this process may use"
            + (", following the load" if name in FOLLOWS_LOAD else "")
            + f") [{THREADS.describe()} or auto]",
        )
    return parser


THREADS = Range(1, 1024)
# Commands that only read a model follow the load by default (bertkit.threads.Governor); training does not,
# since the thread count changes the order of sums and so the weights (same seed, same bits).
FOLLOWS_LOAD = frozenset(
    ("embed", "serve", "index", "search", "similarity", "fill-mask", "attention", "generate", "predict", "evaluate")
    + ("retrieval eval", "mine-negatives")
)


def thread_count(text: str) -> int | str:
    return "auto" if text == "auto" else number(int, THREADS)(text)


def main(argv: list[str] | None = None) -> int:
    return finish_process(_run(argv))


def _run(argv: list[str] | None) -> int:
    try:
        args = vars(build_parser().parse_args(argv))
        fn = args.pop("_fn")
        args.pop("command"), args.pop("subcommand", None)
        threads = args.pop("_threads") if "_threads" in args else args.get("threads")
        _check_utf8(args)
        name = next(n for n, f in COMMANDS.items() if f is fn)
        # before torch loads: the OpenMP runtime reads its settings once (bertkit.threads)
        configure(threads, follow=name in FOLLOWS_LOAD)
        fn(**args)
    except BertkitError as e:  # one line, whatever a file name or a field quoted in it holds
        print(f"bertkit: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine said no: a permission, a full disk, a path that is a folder
        if isinstance(e, BrokenPipeError):
            return 0  # `bertkit ... | head`
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"bertkit: error: {_one_line(where)}{e.strerror or e}; check the path, its permissions and the free space",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("bertkit: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_following()  # in-process callers (tests, a host program) get their thread count back
    return 0


def finish_process(code: int) -> int:
    """The exit of a CLI command: `code` as it is in a plain process. Under torchrun the ranks meet at a barrier
    (after a success), destroy the process group and leave by `os._exit`, skipping interpreter finalization.
    Why: a rank whose work was done and written still died of SIGABRT ("terminate called without an active
    exception") at exit, even with `training._leave_process_group`: C++ threads of the process group (gloo) met a
    finalizing interpreter (pytorch/pytorch#179291 describes the
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


def _one_line(text: str) -> str:
    """An error is one line, whatever a file name or a quoted field in it holds."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


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
