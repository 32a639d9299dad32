"""Wire text cut into reads of given sizes, as a TCP peer may deliver it."""

from __future__ import annotations


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, i = [], 0
    for size in sizes:
        if i >= len(data):
            break
        chunks.append(data[i:i + size])
        i += size
    if i < len(data):
        chunks.append(data[i:])
    return chunks
