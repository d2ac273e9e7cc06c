"""Two drills at once take different network namespaces (``drill/partition.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_forwarder.drill import partition
from redis_forwarder.errors import UsageError


def test_tags_in_use_are_skipped_and_the_count_wraps_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partition, "NAMESPACES", tmp_path)
    for tag in (248, 0):  # another drill's namespaces
        (tmp_path / f"rfdrill{tag}").touch()
    assert partition.free_tags(3, start=247) == [247, 249, 1]


def test_no_free_tags_says_how_to_clean_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition, "NAMESPACES", tmp_path)
    for tag in range(partition.TAGS - 1):
        (tmp_path / f"rfdrill{tag}").touch()
    assert partition.free_tags(1, start=0) == [partition.TAGS - 1]
    with pytest.raises(UsageError, match="ip netns delete"):
        partition.free_tags(2, start=0)
