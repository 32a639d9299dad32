"""One leg's record: its channels, status, answer and end."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from controller.core.outcomes import Q850_TO_SIP, LegStatus


@dataclass
class LegRecord:
    target: str
    status: LegStatus = LegStatus.PENDING
    # The switch's channels for this leg (leg B rings several targets at once).
    channels: list[str] = field(default_factory=list)
    dialed: bool = False  # a channel was ever created for this leg
    # Asked of the switch, not yet created nor refused: the call cannot end
    # while a channel may still appear.
    awaiting_channel: bool = False
    hung_up: bool = False  # the party hung up (its channel may not be gone yet)
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None
    cause_text: str | None = None

    @property
    def channel_up(self) -> bool:
        return bool(self.channels)

    def snapshot(self) -> dict[str, Any]:
        """Every field, as a snapshot keeps it (dataclasses.asdict, several times faster:
        it runs on every transition)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["status"] = str(self.status)
        data["channels"] = list(self.channels)
        return data

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": str(self.status),
            "dialed": self.dialed,
            "hangup_cause": self.cause,
            "hangup_cause_text": self.cause_text,
            "sip_code": Q850_TO_SIP.get(self.cause) if self.cause is not None else None,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
        }


_FIELDS = tuple(f.name for f in fields(LegRecord))
