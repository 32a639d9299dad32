"""Admission control: calls started per second (a token bucket) and calls in
progress, each limited; a request over a limit is refused at once with a
Retry-After, never queued behind calls it would slow down."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Admission:
    def __init__(self, calls_per_second: float, max_active: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = calls_per_second  # 0: no limit
        self.max_active = max_active  # 0: no limit
        self.clock = clock
        self.burst = max(1.0, calls_per_second)
        self.tokens = self.burst
        self.updated = clock()

    def admit(self, active: int) -> float | None:
        """None if the call may start now; else seconds to wait before retrying."""
        if self.max_active and active >= self.max_active:
            return 1.0
        if not self.rate:
            return None
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
