"""Forwarding: one task (a route on a shard), from the source's socket to the sink.

Mirrors ``source/`` and ``sink/``. Read in this order:

- ``spec``: what a task is (a frozen TaskSpec) and its sink commands, computed once;
- ``placement``: where its servers are now, as the node tells it;
- ``supervisor``: the Task, its states (``states``) and gaps, kept forwarding through
  failures; stop is immediate and final;
- ``wiring``: one attempt's connections, sinks, writer and overflow policy;
- ``pubsub`` and ``streams``: the loops; ``aside``: oversize and dead letters;
  ``refusals``: what a sink's refusal means (pure);
- ``connections``: every connection of a task, opened and reset in one place;
- ``metrics``: every count of a task, each counted once.

Nothing is re-exported here: importing a sink or source module must not pull in the
whole package (the sinks name TaskMetrics for typing only).
"""
