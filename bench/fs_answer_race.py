"""How often FreeSWITCH cuts short a playback sent to a leg A the moment it answers.

``python -m bench.fs_answer_race --calls 60`` (lab up: ``sip-lab/lab up
freeswitch``) originates calls to the lab's phone A with ``&park()``, as the
controller does, and plays a half-second tone to each with ``uuid_broadcast``,
as the controller plays a whisper. It runs two lanes one after the other:

* ``on-answer``: the broadcast goes the moment A's CHANNEL_ANSWER arrives, as
  the controller sent the whisper before it waited for park();
* ``on-park``: it goes once A's CHANNEL_PARK arrives, as the controller sends
  it now.

A leg A answers before originate() hands it to park(); a playback that
reaches it in between runs in that state and ends at once with ``PLAYBACK
ERROR`` and no PLAYBACK_START. For each lane it prints how the playbacks
ended: played (``FILE PLAYED`` after a PLAYBACK_STOP ``done``), or otherwise
by the application's response. Each call is hung up once its playback ended,
and the lab is left with no channel of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import sys
import uuid
import wave
from collections import Counter
from pathlib import Path

from bench.common import REPO
from controller.backends.freeswitch.wire import EslFramer, Reply, decode_event

ESL = ("127.0.0.1", 8021, "callconnect-lab")  # sip-lab/lab-freeswitch.sh
LEG_A = "sofia/gateway/lab-answer-a/+27115550101"
TONE = REPO / ".lab" / "freeswitch" / "media" / "bench-answer-race.wav"
LANES = {"on-answer": "CHANNEL_ANSWER", "on-park": "CHANNEL_PARK"}
EVENTS = ("CHANNEL_ANSWER CHANNEL_PARK PLAYBACK_START PLAYBACK_STOP CHANNEL_EXECUTE_COMPLETE "
          "CHANNEL_HANGUP_COMPLETE")
CALL_SECONDS = 15.0  # a call's whole life here: answer, a half-second tone, hang-up
READ_SECONDS = 10.0
READ_SIZE = 65536


def write_tone(path: Path, seconds: float = 0.5, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
                      for n in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


class EventSocket:
    """One Event Socket connection, read with the controller's own framer and
    event decoder (``controller.backends.freeswitch.wire``): replies and
    events kept apart, so that no event is lost while a command waits for its
    reply."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self.events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    async def open(self) -> None:
        host, port, password = ESL
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), READ_SECONDS)
        except OSError as exc:
            raise SystemExit(f"no FreeSWITCH Event Socket at {host}:{port} ({exc}): "
                             "bring the lab up with `sip-lab/lab up freeswitch`") from exc
        self._reading = asyncio.create_task(self._read())
        reply = await self.send(f"auth {password}")
        if not reply.startswith("+OK"):
            raise SystemExit(f"the lab's FreeSWITCH refused the password: {reply}")

    async def _read(self) -> None:
        assert self._reader is not None
        framer = EslFramer()
        while data := await self._reader.read(READ_SIZE):
            for frame in framer.feed(data):
                if frame.content_type in ("command/reply", "api/response"):
                    self.replies.put_nowait(Reply(dict(frame.headers), frame.body).text)
                elif (event := decode_event(frame)) is not None:
                    self.events.put_nowait(event)

    async def send(self, command: str) -> str:
        assert self._writer is not None
        self._writer.write(f"{command}\n\n".encode())
        await self._writer.drain()
        return await asyncio.wait_for(self.replies.get(), READ_SECONDS)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()


async def one_call(trigger: str) -> str:
    """How this call's playback ended: 'played' or the application's response."""
    a = f"{uuid.uuid4().hex}-race"
    esl = EventSocket()
    await esl.open()
    try:
        await esl.send(f"filter Unique-ID {a}")
        await esl.send(f"event plain {EVENTS}")
        await esl.send(f"bgapi originate {{origination_uuid={a},originate_timeout=10}}{LEG_A} "
                       "&park()")
        outcome, stopped, sent = "not answered", "", False
        async with asyncio.timeout(CALL_SECONDS):
            while True:
                event = await esl.events.get()
                name = event.get("Event-Name")
                if name == trigger and not sent:
                    sent = True
                    await esl.send(f"api uuid_broadcast {a} {TONE} aleg")
                elif name == "PLAYBACK_STOP":
                    stopped = event.get("Playback-Status", "")
                elif name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "playback":
                    response = event.get("Application-Response", "")
                    outcome = "played" if stopped == "done" and response == "FILE PLAYED" \
                        else response or "no response"
                    await esl.send(f"api uuid_kill {a}")
                elif name == "CHANNEL_HANGUP_COMPLETE":
                    return outcome
    finally:
        await esl.close()


async def run_lane(lane: str, calls: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for placed in range(calls):
        try:
            outcomes[await one_call(LANES[lane])] += 1
        except TimeoutError:
            outcomes[f"not ended within {CALL_SECONDS:g} s"] += 1
        if (placed + 1) % 10 == 0:
            print(f"[answer-race] {lane}: {placed + 1} of {calls}: {dict(outcomes)}", flush=True)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60, help="calls in each lane")
    parser.add_argument("--lanes", default=",".join(LANES),
                        help=f"which lanes, in order, comma-separated: {', '.join(LANES)}")
    args = parser.parse_args()
    lanes = args.lanes.split(",")
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if not lanes or any(lane not in LANES for lane in lanes):
        parser.error(f"--lanes takes {', '.join(LANES)}")
    write_tone(TONE)
    all_ended = True
    for lane in lanes:
        outcomes = asyncio.run(run_lane(lane, args.calls))
        played = outcomes["played"]
        all_ended = all_ended and not any(k.startswith("not ended") for k in outcomes)
        print(f"[answer-race] {lane}: {args.calls} calls: played {played}, cut short "
              f"{args.calls - played} {dict(outcomes)}", flush=True)
    return 0 if all_ended else 1


if __name__ == "__main__":
    sys.exit(main())
