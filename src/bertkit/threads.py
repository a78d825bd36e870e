"""How many threads bertkit computes with, and how they wait for each other: set once per process, before torch
is imported (`configure`, called by the CLI first thing; the Python API may call it too).

- **How many**: `--threads N` if given, else OMP_NUM_THREADS if the user set it, else the cores this process
  may run on (`os.sched_getaffinity`: a container's or `taskset`'s limit, not the machine's core count).
- **How they wait**: OpenMP threads that finish a parallel region early spin, waiting for the others (torch's
  libgomp: 300,000 spins before sleeping). On a machine where another process holds a core, the thread that
  shares it is descheduled while its partner spins on the other core: pretraining beside one busy process ran
  at 0.29x its quiet speed. bertkit sets `SPIN` below: GOMP_SPINCOUNT=1000, a short spin, then sleep. Measured
  (`benchmarks/bench_busy.py`, 2 cores, a BERT-Tiny-sized pretraining step): busy 0.58x the quiet speed at the
  quiet speed of the default; `OMP_WAIT_POLICY=PASSIVE` (no spin) was 0.68x busy but 19% slower quiet. A
  policy or spin count the user set in the environment is never replaced.

- **Following the load** (`--threads auto`, and the default of the commands that only read a model: embed,
  serve, search, ...): a short spin is not enough beside a busy process, since three runnable threads then
  share two cores and both of bertkit's wait at every barrier for the one that was descheduled. `Governor`
  samples, about once a second at a step or batch boundary, how busy the other processes keep this process's
  cores (/proc/stat for those cores, less this process's own CPU time) and runs on the cores left to it: one
  thread beside one busy process on 2 cores, both again when it stops. A change waits for two samples that
  agree. Training does not follow by default: the thread count changes the order of floating-point sums, so
  the weights would depend on what else ran (same seed, same bits); `--threads auto` asks for it.

Both are environment variables read when the OpenMP runtime starts, which is why this runs before torch is
imported. Where torch is already loaded (bertkit called inside another program, or the tests) the host's
choice stands: only an explicit `--threads` changes the count (`torch.set_num_threads`), and the wait policy is
left as the runtime started. The graph engines (onnxruntime, openvino) take their count when a model is
compiled and keep it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

AFFINITY = "the cores this process may use"  # a plan's why when neither --threads nor OMP_NUM_THREADS said
SPIN = ("GOMP_SPINCOUNT", "1000")  # the libgomp setting bertkit adds when the user set neither it nor a policy


@dataclass(frozen=True)
class Plan:
    threads: int
    why: str  # where the count came from
    wait: str  # how threads wait, as the runtime will see it ("" where the runtime started first)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan(threads: int | None = None, environ: dict[str, str] | None = None) -> Plan:
    environ = os.environ if environ is None else environ
    if threads is not None:
        count, why = threads, "--threads"
    elif environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(environ["OMP_NUM_THREADS"]) > 0:
        count, why = int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        count, why = cores(), AFFINITY
    if environ.get("OMP_WAIT_POLICY"):
        wait = f"OMP_WAIT_POLICY={environ['OMP_WAIT_POLICY']}"
    else:
        wait = f"{SPIN[0]}={environ.get(SPIN[0]) or SPIN[1]}"
    return Plan(count, why, wait)


def configure(threads: int | str | None = None, follow: bool = False) -> Plan:
    """Apply `plan(threads)` to this process: the environment before torch loads, torch's count after.
    `threads="auto"` or `follow` (with no count given) also starts following the load (`Governor`, `follow_load`);
    `stop_following` ends it."""
    auto = threads == "auto"
    threads = None if auto else threads
    chosen = plan(threads)
    started = "torch" in sys.modules
    if not started:
        os.environ["OMP_NUM_THREADS"] = str(chosen.threads)
        if not os.environ.get("OMP_WAIT_POLICY"):
            os.environ.setdefault(*SPIN)
        if auto or (follow and chosen.why == AFFINITY):  # never against a count the user gave
            _start(chosen.threads)
            return Plan(chosen.threads, chosen.why + ", following the load", chosen.wait)
        return chosen
    import torch  # loaded by the host process, which chose its threads: only an explicit --threads changes them

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if auto:
        _start(torch.get_num_threads())
    return Plan(torch.get_num_threads(), chosen.why if threads is not None else "torch's own setting", "")


# ------------------------------------------------------------------------------------------ following the load
def _cpu_busy_seconds() -> float | None:
    """CPU seconds spent busy (not idle, not waiting for I/O) on the cores this process may use, since boot;
    None where /proc/stat cannot be read (not Linux)."""
    try:
        mine = {f"cpu{c}" for c in os.sched_getaffinity(0)}
        with open("/proc/stat") as f:
            busy = 0
            for line in f:
                fields = line.split()
                if fields and fields[0] in mine:
                    ticks = [int(x) for x in fields[1:]]
                    busy += sum(ticks[:8]) - ticks[3] - ticks[4]  # user..steal, less idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError, IndexError):
        return None


def _sample() -> tuple[float, float] | None:
    busy = _cpu_busy_seconds()
    return None if busy is None else (busy, time.process_time())


class Governor:
    """Runs on the cores other processes leave free: at most `most` threads, at least one. `tick()` is cheap
    and is called at step or batch boundaries (of the thread that computes: OpenMP's count is per thread)."""

    def __init__(
        self,
        most: int,
        available: int | None = None,
        every: float = 1.0,
        sample: Callable[[], tuple[float, float] | None] = _sample,
        clock: Callable[[], float] = time.monotonic,
        set_threads: Callable[[int], None] | None = None,
    ):
        self.most, self.every = most, every
        self.available = available if available is not None else cores()  # the cores this process may use
        self.sample, self.clock = sample, clock
        self.set_threads = set_threads or _set_torch_threads
        self.threads, self.pending, self.changes = most, most, 0
        self.last = (clock(), sample())

    def free_cores(self, busy: float, own: float, seconds: float) -> float:
        """The cores the other processes left free over a window: `busy` CPU seconds on our cores, `own` ours."""
        others = max(0.0, busy - own) / seconds
        return max(0.0, self.available - others)

    def tick(self) -> int:
        now = self.clock()
        then, before = self.last
        if now - then < self.every:
            return self.threads
        after = self.sample()
        self.last = (now, after)
        if before is None or after is None:
            return self.threads
        free = self.free_cores(after[0] - before[0], after[1] - before[1], now - then)
        target = max(1, min(self.most, int(free + 0.5)))
        if target != self.threads and target == self.pending:  # two samples in a row agree
            self.threads = target
            self.changes += 1
            self.set_threads(target)
        self.pending = target
        return self.threads


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


_governor: Governor | None = None


def _start(most: int) -> None:
    global _governor
    _governor = Governor(most)


def following() -> Governor | None:
    return _governor


def follow_load() -> None:
    """A step or batch boundary: where the thread count may change when this process follows the load."""
    if _governor is not None:
        _governor.tick()


def stop_following() -> None:
    """Stop following and give torch back the count it started with."""
    global _governor
    governor, _governor = _governor, None
    if governor is not None and governor.threads != governor.most:
        governor.set_threads(governor.most)
