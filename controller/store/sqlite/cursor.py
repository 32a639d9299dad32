"""Keyset cursors for the newest-first lists: the (time, id) of a page's last
row, opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json

from controller.errors import InvalidField


def encode_cursor(at: float, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, UnicodeError, ValueError, TypeError) as exc:
        raise InvalidField("cursor is not one this server returned", field="cursor") from exc
    if not isinstance(at, int | float) or not isinstance(row_id, str):
        raise InvalidField("cursor is not one this server returned", field="cursor")
    return float(at), row_id
