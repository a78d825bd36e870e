"""Threads: the count from --threads, OMP_NUM_THREADS or the process's affinity, and the wait policy set before
torch loads; a user's environment is respected; a host process that loaded torch keeps its own choice; following
the load (`Governor`) runs on the cores other processes leave free, and gives them back."""

import os
import subprocess
import sys

import pytest
import torch

from bertkit import threads
from bertkit.threads import Governor, configure, cores, plan


def test_the_count_comes_from_the_flag_then_the_environment_then_the_affinity():
    assert plan(None, {}).threads == cores() == len(os.sched_getaffinity(0))
    assert plan(None, {}).why == "the cores this process may use"
    assert plan(None, {"OMP_NUM_THREADS": "3"}).threads == 3
    assert plan(5, {"OMP_NUM_THREADS": "3"}) == plan(5, {}) and plan(5, {}).why == "--threads"
    for junk in ("", "0", "two", "-1", "2,1"):  # not a count the runtime would honour: the affinity decides
        assert plan(None, {"OMP_NUM_THREADS": junk}).threads == cores()


def test_threads_spin_briefly_unless_the_user_said_how_they_wait():
    assert plan(None, {}).wait == "GOMP_SPINCOUNT=1000"
    assert plan(None, {"GOMP_SPINCOUNT": "5"}).wait == "GOMP_SPINCOUNT=5"
    assert plan(None, {"OMP_WAIT_POLICY": "ACTIVE"}).wait == "OMP_WAIT_POLICY=ACTIVE"


PROBE = (
    "import os, sys, json; from bertkit.threads import configure; "
    "p = configure(int(sys.argv[1]) if len(sys.argv) > 1 else None); import torch; "
    "print(json.dumps([torch.get_num_threads(), os.environ.get('GOMP_SPINCOUNT'), p.why]))"
)


def probe(*args: str, env: dict | None = None, affinity: set | None = None) -> list:
    import json

    mine = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    environ = {k: v for k, v in os.environ.items() if k not in mine}
    environ |= env or {}

    def pin():
        if affinity is not None:
            os.sched_setaffinity(0, affinity)

    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=environ, capture_output=True, text=True, check=True, preexec_fn=pin
    )
    return json.loads(out.stdout)


def test_a_fresh_process_gets_the_plan_before_torch_loads():
    assert probe("1") == [1, "1000", "--threads"]
    assert probe(env={"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}) == [1, None, "OMP_NUM_THREADS"]
    assert probe(affinity={min(os.sched_getaffinity(0))}) == [1, "1000", "the cores this process may use"]


def test_a_host_that_loaded_torch_keeps_its_count_unless_told():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert configure().threads == 1 and torch.get_num_threads() == 1  # the host's choice stands
        if cores() > 1:
            assert configure(2).threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value, refused", [("1", False), ("0", True), ("x", True), ("auto", False)])
def test_every_command_takes_threads(tmp_path, capsys, value, refused):
    from bertkit.cli.table import main

    before = torch.get_num_threads()
    try:
        assert main(["similarity", "--threads", value, str(tmp_path / "missing"), "a", "b"]) == 2
        err = capsys.readouterr().err
        assert ("--threads" in err) == refused  # else the run went on and found the folder missing
        assert refused or "missing" in err
    finally:
        torch.set_num_threads(before)


# ---- following the load ----------------------------------------------------------------------------------


class Machine:
    """A fake clock and /proc/stat: `others` cores kept busy by other processes, `own` by this one."""

    def __init__(self, others: float = 0.0, own: float = 2.0):
        self.now, self.busy, self.cpu, self.others, self.own = 0.0, 0.0, 0.0, others, own

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.busy += (self.others + self.own) * seconds
        self.cpu += self.own * seconds

    def governor(self, most: int = 2, available: int = 2) -> tuple[Governor, list[int]]:
        applied: list[int] = []
        g = Governor(most, available, 1.0, lambda: (self.busy, self.cpu), lambda: self.now, applied.append)
        return g, applied


def test_the_governor_runs_on_the_cores_others_leave_free_after_two_samples_agree():
    m = Machine()
    g, applied = m.governor()
    for _ in range(5):  # quiet: both cores
        m.advance(1.0)
        assert g.tick() == 2
    m.others, m.own = 1.0, 1.0  # one busy process: 3 runnable threads on 2 cores
    m.advance(1.0)
    assert g.tick() == 2 and applied == []  # one sample is not enough
    m.advance(1.0)
    assert g.tick() == 1 and applied == [1]
    m.advance(0.5)
    assert g.tick() == 1  # within a window: nothing sampled
    m.others = 0.0  # it stopped
    for _ in range(2):
        m.advance(1.0)
        g.tick()
    assert g.threads == 2 and applied == [1, 2] and g.changes == 2


@pytest.mark.parametrize("others, expected", [(0.3, 4), (0.6, 3), (1.4, 3), (1.6, 2), (3.0, 1), (9.0, 1)])
def test_the_governor_rounds_the_free_cores_within_one_and_its_most(others, expected):
    m = Machine(others=others, own=1.0)
    g, _ = m.governor(most=4, available=4)
    for _ in range(3):
        m.advance(1.0)
        g.tick()
    assert g.threads == expected


def test_the_governor_without_proc_stat_keeps_its_count():
    g = Governor(2, 2, 1.0, lambda: None, iter(range(100)).__next__, lambda n: pytest.fail("changed threads"))
    assert [g.tick() for _ in range(5)] == [2] * 5


def test_the_busy_seconds_of_this_processes_cores_grow_while_it_computes():
    before = threads._cpu_busy_seconds()
    start = __import__("time").process_time()
    while __import__("time").process_time() - start < 0.3:
        pass
    assert before is not None and threads._cpu_busy_seconds() - before >= 0.2


def test_auto_follows_and_stop_gives_the_count_back():
    before = torch.get_num_threads()
    try:
        plan_ = configure("auto")
        assert threads.following() is not None and threads.following().most == plan_.threads == before
        threads.following().set_threads(1)
        threads.following().threads = 1
        threads.stop_following()
        assert threads.following() is None and torch.get_num_threads() == before
    finally:
        threads.stop_following()
        torch.set_num_threads(before)


FOLLOW = (
    "import json, sys; from bertkit import threads; "
    "p = threads.configure(sys.argv[1] if sys.argv[1] == 'auto' else None, follow=sys.argv[2] == '1'); "
    "print(json.dumps([threads.following() is not None, p.why]))"
)


def test_a_fresh_process_follows_when_asked_or_by_default_but_not_against_the_users_count():
    def run(threads_: str, follow: str, env: dict | None = None) -> list:
        import json

        environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | (env or {})
        out = subprocess.run(
            [sys.executable, "-c", FOLLOW, threads_, follow], env=environ, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    assert run("auto", "0") == [True, "the cores this process may use, following the load"]
    assert run("-", "1") == [True, "the cores this process may use, following the load"]  # embed, serve...
    assert run("-", "0") == [False, "the cores this process may use"]  # training
    assert run("-", "1", {"OMP_NUM_THREADS": "1"}) == [False, "OMP_NUM_THREADS"]  # the user chose
