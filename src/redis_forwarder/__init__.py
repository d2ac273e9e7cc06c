"""redis-forwarder: a high-availability message forwarder for Redis."""

from __future__ import annotations

__version__ = "0.1.0"
