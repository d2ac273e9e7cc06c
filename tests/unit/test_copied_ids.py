"""When a stream route copies entry ids into its sink (replays become no-ops)."""

from __future__ import annotations

from typing import Any

import pytest

from redis_forwarder.forwarding.spec import copies_stream_ids
from redis_forwarder.routes import RouteConfig


def route(to: dict[str, Any]) -> RouteConfig:
    return RouteConfig.model_validate(
        {"name": "r", "from": {"streams": ["s"], "group": "g"}, "to": to}
    )


@pytest.mark.parametrize(
    ("to", "cluster", "copied"),
    [
        ({"stream": "copy:{channel}"}, False, True),  # back into the same shard
        ({"stream": "copy"}, False, False),  # many streams into one: ids collide
        ({"target": "t", "stream": "copy:{channel}"}, False, False),  # two masters' "s"
        ({"target": "t", "stream": "copy:{shard}:{channel}"}, False, True),
        # A cluster key lives in one slot: {channel} alone names one source stream,
        # also after its slot migrated to another shard's task.
        ({"target": "t", "stream": "copy:{channel}"}, True, True),
        ({"target": "t", "stream": "copy"}, True, False),
    ],
)
def test_ids_are_copied_only_where_one_sink_stream_has_one_source(
    to: dict[str, Any], cluster: bool, copied: bool
) -> None:
    assert copies_stream_ids(route(to), source_is_cluster=cluster) is copied
