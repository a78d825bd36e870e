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

Both are environment variables read when the OpenMP runtime starts, which is why this runs before torch is
imported. Where torch is already loaded (bertkit called inside another program, or the tests) the host's
choice stands: only an explicit `--threads` changes the count (`torch.set_num_threads`), and the wait policy is
left as the runtime started.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

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
        count, why = cores(), "the cores this process may use"
    if environ.get("OMP_WAIT_POLICY"):
        wait = f"OMP_WAIT_POLICY={environ['OMP_WAIT_POLICY']}"
    else:
        wait = f"{SPIN[0]}={environ.get(SPIN[0]) or SPIN[1]}"
    return Plan(count, why, wait)


def configure(threads: int | None = None) -> Plan:
    """Apply `plan(threads)` to this process: the environment before torch loads, torch's count after."""
    chosen = plan(threads)
    started = "torch" in sys.modules
    if not started:
        os.environ["OMP_NUM_THREADS"] = str(chosen.threads)
        if not os.environ.get("OMP_WAIT_POLICY"):
            os.environ.setdefault(*SPIN)
        return chosen
    import torch  # loaded by the host process, which chose its threads: only an explicit --threads changes them

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return Plan(torch.get_num_threads(), chosen.why if threads is not None else "torch's own setting", "")
