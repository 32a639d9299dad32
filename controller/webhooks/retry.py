"""The one retry rule: network errors, timeouts, 408, 429 and 5xx are retried,
after ``Retry-After`` when the receiver gives one, else after an exponential
backoff with full jitter; any other answer is final."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC

RETRYABLE = {408, 429}
# 2**32 times any sane base_delay is far past max_delay; a larger power would overflow a float.
MAX_BACKOFF_EXPONENT = 32


def is_retryable(status: int) -> bool:
    """Whether an HTTP answer to a webhook is worth another attempt."""
    return status >= 500 or status in RETRYABLE


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date);
    None if it is neither."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before the next attempt: never less than ``min_delay``
    nor more than ``max_delay``."""

    base_delay: float
    max_delay: float
    min_delay: float = 0.0

    def delay(self, attempts: int, retry_after: str | None = None, now: float = 0.0) -> float:
        """After ``attempts`` failed attempts; ``retry_after`` is the header's value, if any."""
        asked = None if retry_after is None else parse_retry_after(retry_after, now)
        if asked is not None:
            return max(self.min_delay, min(self.max_delay, asked))
        ceiling = self.base_delay * 2.0 ** min(attempts - 1, MAX_BACKOFF_EXPONENT)
        # Full jitter spreads the retries of many deliveries that failed together.
        return max(self.min_delay, random.uniform(0, min(self.max_delay, ceiling)))
