"""Listening to every sentinel's event channels, to refresh the moment something moves.

Events only *wake* the watcher; it then reads a fresh view (level-triggered), so a
missed, duplicated or reordered event costs nothing but latency, and the periodic
refresh catches what no event announced. A listener reconnects with backoff forever,
so a sentinel that was down is listened to again once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from redis_forwarder.model import Address
from redis_forwarder.retry import Backoff
from redis_forwarder.settings import Credentials

log = logging.getLogger(__name__)

# The events after which a master, a replica or a sentinel's view may have changed.
EVENTS = (
    "+switch-master",
    "+failover-end",
    "+failover-end-for-timeout",
    "+odown",
    "-odown",
    "+sdown",
    "-sdown",
    "+slave",
    "+convert-to-slave",
    "+slave-reconf-done",
    "+reset-master",
    "+role-change",
)
HEALTH_CHECK_INTERVAL = 5  # PING on an idle subscription, so a dead link is noticed


async def listen(
    address: Address,
    credentials: Credentials,
    timeout: float,
    on_event: Callable[[str], None],
) -> None:
    """Run until cancelled: subscribe to ``address``'s events, call ``on_event(reason)``."""
    backoff = Backoff(initial=0.2, cap=5.0)
    while True:
        client = aioredis.Redis(
            host=address.host,
            port=address.port,
            username=credentials.username,
            password=credentials.password,
            socket_connect_timeout=timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(NoBackoff(), 0),  # this loop reconnects with its own backoff
            decode_responses=True,
            **(credentials.tls.redis_py() if credentials.tls else {}),
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*EVENTS)
            backoff.reset()
            log.debug("listening to sentinel %s", address)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    on_event(f"sentinel {address}: {message['channel']} {message['data']}")
        except asyncio.CancelledError:
            raise
        except (redis_errors.RedisError, OSError) as exc:
            log.debug("sentinel %s event link failed: %s", address, exc)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
        await asyncio.sleep(backoff.next_delay())
