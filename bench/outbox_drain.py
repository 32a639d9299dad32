"""How fast the webhook outbox works off a backlog: ``python -m bench.outbox_drain
[--deliveries N]`` (no lab, no root).

A receiver that was down leaves its webhooks pending, retried later; when it
answers again, the outbox has them all to send. This puts N such retries, all
due, in a real store of its own, and times the daemon's outbox (the real one,
with its HTTP client and its store) sending them to a receiver on loopback
that answers 204 at once, in a process of its own. It prints the wall time
and the outbox process's CPU, each per webhook: a cost per webhook that
grows with N is work done again for every answer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import structlog

from bench.hook_receiver import HookReceiver
from controller.outbound import OutboundConfig
from controller.store import StoredCall, WebhookDelivery
from controller.store.sqlite import SqliteStore
from controller.webhooks.envelope import envelope
from controller.webhooks.outbox import Outbox

DRAIN_TIMEOUT = 600.0  # seconds for the whole backlog at most


async def drain(deliveries: int) -> None:
    receiver = HookReceiver()
    await receiver.start()
    try:
        with tempfile.TemporaryDirectory(prefix="callconnect-drain-") as folder:
            store = SqliteStore(Path(folder) / "callconnect.sqlite")
            await store.open()
            try:
                await backlog(store, receiver.url, deliveries)
                outbox = Outbox(store, None, outbound=OutboundConfig(allow_private=True))
                cpu, began = time.process_time(), time.monotonic()
                running = asyncio.create_task(outbox.run())
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    while len(receiver.webhooks) < deliveries:
                        await asyncio.sleep(0.01)
                wall, cpu = time.monotonic() - began, time.process_time() - cpu
                await outbox.stop()
                await running
            finally:
                await store.close()
    finally:
        await receiver.stop()
    print(f"[drain] {deliveries} retries due: sent in {wall:.2f} s, {wall / deliveries * 1000:.2f} ms "
          f"a webhook; the outbox's CPU {cpu:.2f} s, {cpu / deliveries * 1000:.2f} ms a webhook")


async def backlog(store: SqliteStore, url: str, deliveries: int) -> None:
    """``deliveries`` completion webhooks of one call, each tried before and due again."""
    now = time.time()
    call = StoredCall(call_id="drain", created_at=now, updated_at=now, state="ended",
                      status="completed", request={}, snapshot={}, result={"status": "completed"})
    await store.create_call(call)
    at = [now - deliveries + n for n in range(deliveries)]
    await store.save_call(call, [], [
        WebhookDelivery(event_id=f"evt_drain_{n:07d}", call_id=call.call_id, url=url,
                        event_type="call.completed",
                        # The receiver counts webhooks by the call id in their data.
                        payload=envelope("call.completed", {"call_uuid": f"drain-{n}"}, at[n]),
                        created_at=at[n], next_attempt_at=at[n], attempts=3,
                        last_error="HTTP 503") for n in range(deliveries)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_drain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=3000, help="the backlog (default 3000)")
    deliveries = parser.parse_args().deliveries
    if deliveries < 1:
        parser.error("--deliveries must be at least 1")
    # The outbox logs every webhook it sends; the figure is the outbox's, not the log's.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(drain(deliveries))


if __name__ == "__main__":
    main()
