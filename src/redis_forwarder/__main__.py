from __future__ import annotations

from redis_forwarder.cli.main import main

main()
