"""Records for the store tests."""

from __future__ import annotations

from controller.store import IdempotencyKey, StoredCall, WebhookDelivery


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
