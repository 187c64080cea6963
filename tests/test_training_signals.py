"""mindresnet.training.signals: StopSignals stops at the next check, aborts abortable work, and a non-leader's grace."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mindresnet.interrupts import Preempted
from mindresnet.training.signals import StopSignals

from conftest import REPO


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_the_next_check(signum, code):
    before = signal.getsignal(signum)
    with StopSignals() as stop:
        os.kill(os.getpid(), signum)
        time.sleep(0.01)  # the handler has run: the work in progress went on
        assert stop.requested
        with pytest.raises(Preempted) as caught:
            stop.check()
    assert caught.value.exit_code == code and isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signum) is before


def test_a_signal_during_abortable_work_stops_it_at_once():
    with StopSignals() as stop:
        started = time.perf_counter()
        with pytest.raises(Preempted):
            with stop.abortable():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(500):
                    time.sleep(0.01)
        assert time.perf_counter() - started < 1.0
        with pytest.raises(Preempted):  # a pending stop also refuses to start abortable work
            with stop.abortable():
                pass


def test_a_non_leader_rank_keeps_stepping_then_exits_after_its_grace():
    code = ("import os, signal, time\n"
            "from mindresnet.training.signals import StopSignals\n"
            "with StopSignals(leader=False, peer_grace_s=0.5) as stop:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    for step in range(300):\n"
            "        stop.check()\n"
            "        print(step, flush=True)\n"
            "        time.sleep(0.01)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 143, result.stderr
    steps = result.stdout.split()
    assert 5 < len(steps) < 300  # stepped on after the signal, ended by the grace timer
