"""Sources: reading messages from one shard (pub/sub, sharded pub/sub, streams)."""
