"""The hot standby of a pub/sub task (issue 15): the ring a standby keeps while it
listens, and the watermark the owner leaves in the sink's deployment."""
