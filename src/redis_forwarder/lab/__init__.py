"""The local lab: real Redis, Sentinel, Cluster and ZooKeeper processes from a topology spec.

The same code serves operators (``redis-forwarder lab``) and the test fixtures.
"""

from __future__ import annotations

from redis_forwarder.lab.lab import (
    DownReport,
    Lab,
    ProcessStatus,
    default_lab_dir,
    temporary_lab,
)
from redis_forwarder.lab.spec import TopologySpec, load_spec, parse_spec

__all__ = [
    "DownReport",
    "Lab",
    "ProcessStatus",
    "TopologySpec",
    "default_lab_dir",
    "load_spec",
    "parse_spec",
    "temporary_lab",
]
