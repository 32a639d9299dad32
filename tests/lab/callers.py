"""A SIPp phone that calls in to a lab switch (sip-lab/phones/call-in.xml:
the Asterisk lab's on udp 5060 by default, or the FreeSWITCH lab's on 5080),
with the key presses and talk of one test put into the scenario's steps."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dpkt

REPO = Path(__file__).resolve().parents[2]
CALL_IN = REPO / "sip-lab" / "phones" / "call-in.xml"
SOUNDS = Path("/usr/share/sip-tester")
# The caller's own ports: clear of the lab phones (5071-5076, media 16010-16060).
CALLER_SIP_PORT, CALLER_MEDIA_PORT = 5091, 16110
_KEY_FILES = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
              "*": "dtmf_2833_star.pcap", "#": "dtmf_2833_pound.pcap"}
STEPS_START, STEPS_END = "<!-- steps -->", "<!-- /steps -->"
# Where each lab switch takes incoming calls (sip-lab/asterisk, sip-lab/freeswitch).
ASTERISK_SIP, FREESWITCH_SIP = "127.0.0.1:5060", "127.0.0.1:5080"
# What the scenario logs (sipp puts a time stamp before each).
_MESSAGE = re.compile(r"\b(answered|final [0-9]{3}|bye)\s*$", re.MULTILINE)


def wait(milliseconds: int) -> str:
    return f'<pause milliseconds="{milliseconds}"/>'


class Keypad:
    """Key presses for one call. Debian's dtmf_2833_*.pcap were each cut from
    one recording, so their RTP sequence numbers and timestamps only rise in
    the order 0-9, *, #: a later press of a lower key would reach the switch
    as an old packet and be dropped. Each press here is a copy whose numbers
    go on from the press before."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.presses = 0

    def press(self, key: str) -> str:
        """One RFC 2833 key press (about 140 ms of events)."""
        self.presses += 1
        copy = self.folder / f"press-{self.presses}-{_KEY_FILES[key]}"
        with (SOUNDS / _KEY_FILES[key]).open("rb") as source, copy.open("wb") as target:
            reader = dpkt.pcap.Reader(source)
            writer = dpkt.pcap.Writer(target, linktype=reader.datalink())
            first: tuple[int, int] | None = None
            for at, frame in reader:
                ethernet = dpkt.ethernet.Ethernet(frame)
                udp = ethernet.data.data
                rtp = bytearray(udp.data)
                sequence, timestamp = struct.unpack("!HI", rtp[2:8])
                first = first or (sequence, timestamp)
                struct.pack_into("!HI", rtp, 2, 1000 + 100 * self.presses + sequence - first[0],
                                 8000 * self.presses + timestamp - first[1])
                udp.data, udp.sum = bytes(rtp), 0
                writer.writepkt(bytes(ethernet), at)
        return f'<nop><action><exec play_pcap_audio="{copy}"/></action></nop>'


def talk() -> str:
    """Seven seconds of speech, sent while the next steps run."""
    return f'<nop><action><exec play_pcap_audio="{SOUNDS / "g711a.pcap"}"/></action></nop>'


@dataclass
class Caller:
    process: subprocess.Popen[bytes]
    log: Path
    errors: Path

    async def finished(self, timeout: float = 60) -> list[str]:
        """What the phone logged, in order ("answered", "final NNN", "bye"),
        once it is done."""
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"the calling phone did not finish within {timeout:g} s") from None
        errors = self.errors.read_text() if self.errors.exists() else ""
        assert code == 0, f"the calling phone's call failed (sipp exit {code}):\n{errors[-2000:]}"
        logged = self.log.read_text() if self.log.exists() else ""
        return _MESSAGE.findall(logged)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def call_in(folder: Path, number: str, caller: str, steps: tuple[str, ...] = (),
            switch: str = ASTERISK_SIP) -> Caller:
    """Start a phone calling ``number`` from ``caller`` at the switch's SIP
    address; once answered it runs ``steps`` (wait, press, talk), then waits
    for the switch to hang up."""
    template = CALL_IN.read_text()
    start, end = template.index(STEPS_START), template.index(STEPS_END)
    scenario = folder / "call-in.xml"
    scenario.write_text(template[:start] + "\n  ".join(steps) + template[end:])
    log, errors = folder / "call-in.log", folder / "call-in.errors"
    argv = ["sipp", "-sf", str(scenario), "-s", number, "-key", "caller", caller,
            "-i", "127.0.0.1", "-p", str(CALLER_SIP_PORT), "-mi", "127.0.0.1",
            "-mp", str(CALLER_MEDIA_PORT), "-m", "1", "-nostdin", "-trace_logs",
            "-log_file", str(log), "-trace_err", "-error_file", str(errors), switch]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Caller(process, log, errors)
