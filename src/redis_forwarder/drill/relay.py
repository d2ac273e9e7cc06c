"""A TCP relay: ``python -m redis_forwarder.drill.relay LISTEN=UPSTREAM ...`` accepts on
each LISTEN address and pipes every connection to its UPSTREAM, both ways, until either
side closes. The partition drills run a pair of these around a veth link (one in the
forwarder node's network namespace, one outside), so that taking the link down cuts the
node off silently: its connections stay open and hear nothing, as in a real partition.

SIGUSR1 resets every connection the relay holds (both sides) and goes on accepting: a
test cuts a client's connections to a server as often as it likes, with no restart in
between (the ZooKeeper fault tests cut a node's session connections this way).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence

from redis_forwarder.model import Address
from redis_forwarder.resp import reset

CONNECT_TIMEOUT = 30.0  # a cut link must look like silence, not a quick refusal


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction. An end closed cleanly is closed cleanly on the other side; an end
    reset is reset on the other side, dropping what the relay holds: like one TCP
    connection, not a buffering proxy that would deliver a reset writer's bytes after
    the partition heals."""
    was_reset = False
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        was_reset = True
    finally:
        with contextlib.suppress(Exception):
            if was_reset:
                reset(writer.transport)
            else:
                writer.close()


def _handler(upstream: Address, held: set[asyncio.StreamWriter]):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(upstream.host, upstream.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        held.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            held.difference_update((writer, up_writer))

    return handle


def _cut(held: set[asyncio.StreamWriter]) -> None:
    """Reset every held connection on both sides; each pipe then ends on its own."""
    for writer in list(held):
        reset(writer.transport)
    held.clear()


async def serve(mappings: list[tuple[Address, Address]]) -> None:
    held: set[asyncio.StreamWriter] = set()
    servers = [
        await asyncio.start_server(_handler(upstream, held), listen.host, listen.port)
        for listen, upstream in mappings
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _cut, held)
    print("relaying", flush=True)  # the drill waits for this line
    await stop.wait()
    for server in servers:
        server.close()


def start(mappings: Sequence[str], wrap: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """A relay process for ``LISTEN=UPSTREAM`` mappings (``wrap``: a prefix such as
    ``ip netns exec NS``), returned once it listens on every address."""
    relay = subprocess.Popen(
        [*wrap, sys.executable, "-m", "redis_forwarder.drill.relay", *mappings],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert relay.stdout is not None
    if relay.stdout.readline() != b"relaying\n":
        stop(relay)
        raise RuntimeError(f"the relay {' '.join([*wrap, *mappings])} did not start")
    return relay


def stop(relay: subprocess.Popen[bytes]) -> None:
    """Terminate the relay by its pid, then kill it if it lingers."""
    relay.terminate()
    try:
        relay.wait(5)
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait(5)


def main(argv: list[str]) -> None:
    mappings = []
    for pair in argv:
        listen, _, upstream = pair.partition("=")
        mappings.append((Address.parse(listen), Address.parse(upstream)))
    asyncio.run(serve(mappings))


if __name__ == "__main__":
    main(sys.argv[1:])
