"""Threads: the count from --threads, OMP_NUM_THREADS or the process's affinity, and the wait policy set before
torch loads; a user's environment is respected; a host process that loaded torch keeps its own choice."""

import os
import subprocess
import sys

import pytest
import torch

from bertkit.threads import configure, cores, plan


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


@pytest.mark.parametrize("value, refused", [("1", False), ("0", True), ("x", True)])
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
