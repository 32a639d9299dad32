"""Loopback captures for the lab tests: what each phone was sent, as RTP."""

from __future__ import annotations

import asyncio
import audioop
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dpkt

# A 20 ms G.711 frame louder than this (16-bit RMS) is sound, not silence.
SOUND_RMS = 300


@dataclass
class Packet:
    at: float
    sport: int
    dport: int
    payload: bytes


class Capture:
    """tcpdump on loopback for the length of one call."""

    def __init__(self) -> None:
        self.file = Path(tempfile.mkstemp(suffix=".pcap")[1])
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Capture:
        self.process = subprocess.Popen(
            ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w", str(self.file), "udp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.process.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stderr.readline), 10)
        assert b"listening" in line, f"tcpdump did not start: {line!r}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        # Asterisk sends the last BYE just after it reports the hangup.
        await asyncio.sleep(0.5)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)

    def packets(self) -> list[Packet]:
        found = []
        with self.file.open("rb") as handle:
            for at, frame in dpkt.pcap.Reader(handle):
                ip = dpkt.ethernet.Ethernet(frame).data
                if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                    found.append(Packet(at, ip.data.sport, ip.data.dport, bytes(ip.data.data)))
        self.file.unlink()
        return found


def rtp_rms(payload: bytes) -> int:
    version, payload_type = payload[0] >> 6, payload[1] & 0x7F
    if version != 2 or payload_type not in (0, 8):
        return 0
    audio = payload[12:]
    linear = audioop.alaw2lin(audio, 2) if payload_type == 8 else audioop.ulaw2lin(audio, 2)
    return audioop.rms(linear, 2)
