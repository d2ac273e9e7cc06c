"""Who holds our node id (coordination/membership.judge): ours, a dead predecessor's, a
live duplicate's on this host, or another host's (waited for). No ZooKeeper needed:
the rule reads the member document and this host's processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from redis_forwarder.coordination.membership import Holder, Verdict, judge, process_start
from redis_forwarder.errors import DuplicateNodeIdError

HOST = socket.gethostname()


def holder(session: int = 7, **document: object) -> Holder:
    pid = document.get("pid")
    start = process_start(pid) if isinstance(pid, int) else None
    return Holder(session, {"id": "n1", "host": HOST, "process_start": start, **document})


def test_a_znode_of_one_of_our_own_sessions_is_replaced() -> None:
    assert judge(holder(7, pid=1), {5, 7}, "n1", "/r") is Verdict.REPLACE


def test_a_dead_process_on_this_host_is_a_predecessor() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    assert judge(holder(pid=int(done.stdout)), set(), "n1", "/r") is Verdict.REPLACE


def test_our_own_pid_from_before_we_started_is_a_predecessor() -> None:
    """A container restarted keeps its host name and pid (often 1)."""
    before_us = holder(pid=os.getpid(), process_start=0)
    assert judge(before_us, set(), "n1", "/r") is Verdict.REPLACE


def test_another_node_in_this_process_is_a_duplicate() -> None:
    with pytest.raises(DuplicateNodeIdError):
        judge(holder(pid=os.getpid()), set(), "n1", "/r")


def test_a_live_process_on_this_host_is_a_duplicate() -> None:
    parent = os.getppid()
    with pytest.raises(
        DuplicateNodeIdError, match=rf"'n1' is taken in /r: host {HOST} pid {parent}"
    ):
        judge(holder(pid=parent), set(), "n1", "/r")


def test_a_recycled_pid_is_not_the_holder() -> None:
    """The live process with that pid is not the one that registered."""
    recycled = holder(pid=os.getppid(), process_start=0)
    assert judge(recycled, set(), "n1", "/r") is Verdict.REPLACE


def test_an_older_releases_document_counts_a_live_pid_as_the_holder() -> None:
    """No process_start recorded: nothing to tell a recycled pid by; refuse."""
    older = Holder(7, {"id": "n1", "host": HOST, "pid": os.getppid()})
    with pytest.raises(DuplicateNodeIdError):
        judge(older, set(), "n1", "/r")


def test_another_hosts_holder_is_waited_for() -> None:
    assert judge(holder(host="elsewhere", pid=1), set(), "n1", "/r") is Verdict.WAIT
