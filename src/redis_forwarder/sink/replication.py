"""WAIT after a sink write: a route's ``to.wait`` (:class:`WaitConfig`), the command it
sends, and the answer a write gets when too few replicas have it.

A Sentinel failover promotes a replica without waiting for it to catch up; whatever the
old master acknowledged past that point is erased when it resyncs as a replica (issue
14: 1.15 s of traffic at 10k msg/s, counted as forwarded). With ``wait``, each batch's
pipeline ends with ``WAIT replicas timeout_ms``, and a batch counts as written only if
enough replicas acknowledged it in time; otherwise its stream entries stay pending at
the source, and are claimed and written again (a no-op with copied ids).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from redis_forwarder.resp import encode


class WaitConfig(BaseModel):
    """``replicas`` replicas must have a batch, ``timeout`` seconds at most (WAIT)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    replicas: int = Field(ge=1, le=100)
    timeout: float = Field(gt=0, le=60)

    def command(self) -> bytes:
        """The encoded WAIT (at least 1 ms: ``WAIT n 0`` would block for ever)."""
        timeout_ms = max(1, round(self.timeout * 1000))
        return encode(b"WAIT", str(self.replicas).encode(), str(timeout_ms).encode())


class Unreplicated:
    """The answer to a write the sink took but too few replicas acknowledged in time:
    not written, as far as acknowledging goes (it may be lost to a failover)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREPLICATED"


UNREPLICATED = Unreplicated()
