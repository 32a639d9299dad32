"""Records and old store files for the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from controller.store import IdempotencyKey, StoredCall, WebhookDelivery
from controller.store.sqlite.link import SqliteLink
from controller.store.sqlite.schema import MIGRATIONS


def make_call(call_id: str, created_at: float = 1000.0, *, state: str = "dialing-a",
              status: str | None = None, key: str | None = None) -> StoredCall:
    return StoredCall(call_id=call_id, created_at=created_at, updated_at=created_at, state=state,
                      status=status, request={"leg_a": "+27115550101", "leg_b": "+27115550202"},
                      snapshot={"state": state},
                      idempotency_key=IdempotencyKey(key) if key else None)


def make_delivery(event_id: str, call_id: str, *, created_at: float = 1000.0,
                  next_attempt_at: float = 1000.0, url: str = "https://hooks.example.com/a?token=t"
                  ) -> WebhookDelivery:
    return WebhookDelivery(event_id=event_id, call_id=call_id, url=url, event_type="call.completed",
                           payload={"id": event_id, "type": "call.completed", "data": {}},
                           created_at=created_at, next_attempt_at=next_attempt_at)


async def at_version(db: SqliteLink, version: int) -> None:
    """The schema an older callconnect (``version``) left on an empty file,
    for a migration test to put its rows in."""
    for migration in MIGRATIONS[:version]:
        await migration(db)
    await db.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                     "version INTEGER NOT NULL)")
    await db.execute("INSERT INTO schema_version VALUES (1, ?)", (version,))


@asynccontextmanager
async def old_file(path: Path) -> AsyncIterator[SqliteLink]:
    """A store file as an older callconnect wrote it: what the block writes,
    in one transaction, committed when the block ends."""
    db = SqliteLink.open(path, busy_timeout=5.0)
    try:
        await db.execute("BEGIN")
        yield db
        await db.commit()
    finally:
        await db.close()
