"""Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag, mod 16384."""

from __future__ import annotations

from redis_forwarder.model import SlotRange

CLUSTER_SLOTS = 16384


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of the key that is hashed: the first ``{...}`` if it is not empty."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes | str) -> int:
    """The slot of a key or channel name, as ``CLUSTER KEYSLOT`` computes it."""
    raw = key.encode() if isinstance(key, str) else key
    return crc16(hash_tag(raw)) % CLUSTER_SLOTS


def ranges_of(slots: frozenset[int] | set[int]) -> tuple[SlotRange, ...]:
    """Compress a set of slots into sorted inclusive ranges."""
    result: list[SlotRange] = []
    for slot in sorted(slots):
        if result and result[-1][1] == slot - 1:
            result[-1] = (result[-1][0], slot)
        else:
            result.append((slot, slot))
    return tuple(result)
