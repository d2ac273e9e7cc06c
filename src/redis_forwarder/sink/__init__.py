"""Sinks: writing batches of messages to channels, streams or lists."""
