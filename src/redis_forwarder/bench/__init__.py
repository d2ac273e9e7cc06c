"""``redis-forwarder bench``: our forwarder against a naive one and a bare raw loop,
measured in the same run on the same deployment (docs/performance.md)."""
