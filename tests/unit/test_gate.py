"""The write gate: open + lease, and a task's bound view that a new session shuts until
the node rebinds it. Pure (an event loop, no sockets)."""

from __future__ import annotations

import asyncio
import time

from redis_forwarder.gate import WriteGate


def test_the_lease_runs_out_on_the_monotonic_clock() -> None:
    gate = WriteGate(lease_until=0.0)
    assert not gate.may_write()  # no answer from ZooKeeper yet
    gate.renew(time.monotonic() + 60)
    assert gate.may_write()
    gate.close()
    assert not gate.may_write()
    gate.reopen()
    assert gate.may_write()
    gate.lease_until = time.monotonic() - 1  # frozen past the lease
    assert not gate.may_write()


def test_a_task_bound_to_an_old_session_never_writes_again() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        gate = WriteGate()
        old_task = gate.bound()
        gate.close()
        gate.generation += 1  # a new session replaced the lost one
        gate.reopen()
        new_task = gate.bound()
        waited = asyncio.ensure_future(old_task.wait())
        await asyncio.sleep(0.1)
        still_waiting = not waited.done()
        waited.cancel()
        return old_task.may_write(), new_task.may_write(), still_waiting

    old_may, new_may, still_waiting = asyncio.run(scenario())
    assert (old_may, new_may, still_waiting) == (False, True, True)


def test_a_bound_gate_waits_for_a_suspended_session_to_come_back() -> None:
    async def scenario() -> bool:
        gate = WriteGate()
        task = gate.bound()
        gate.close()  # suspended, same session
        waiting = asyncio.ensure_future(task.wait())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        gate.reopen()
        await asyncio.wait_for(waiting, 1.0)
        return task.may_write()

    assert asyncio.run(scenario())


def test_a_bound_gate_of_an_old_session_waits_until_rebound() -> None:
    """A task held through a lost session (issue 17) waits at its gate until the node
    resumes it under the new session (the same owner znode): then it writes."""

    async def scenario() -> None:
        gate = WriteGate(lease_until=time.monotonic() + 60)
        bound = gate.bound()
        gate.close()
        gate.generation += 1  # a new session's tasks will be bound to this
        gate.reopen()
        waiter = asyncio.create_task(bound.wait())
        await asyncio.sleep(0.2)
        assert not waiter.done() and not bound.may_write()
        bound.rebind()
        await asyncio.wait_for(waiter, 1)
        assert bound.may_write()

    asyncio.run(scenario())
