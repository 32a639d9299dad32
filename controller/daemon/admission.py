"""Admission control: calls started per second (a token bucket) and calls in
progress, each limited, for the whole daemon and (:class:`LegLimits`) per trunk
and per agent; a request over a limit is refused at once with a Retry-After,
never queued behind calls it would slow down. A client that can wait retries
after Retry-After; a queue here would hold requests (and their callers) while
hiding the overload from whoever sends them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from controller.config import LimitsConfig
from controller.errors import AgentLimit, CallRefused, TrunkLimit

if TYPE_CHECKING:
    from controller.calls.runner import ActiveCall

# Retry-After for a limit on calls in progress: we cannot know when one ends.
ACTIVE_RETRY_SECONDS = 1.0
# Buckets kept before idle (full) ones are dropped.
MAX_BUCKETS = 10000


class Admission:
    """The daemon-wide limits (``api.max_calls_per_second``, ``api.max_active_calls``)."""

    def __init__(self, calls_per_second: float, max_active: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_active = max_active  # 0: no limit
        # None: no limit on starts.
        self.bucket = TokenBucket(calls_per_second, clock) if calls_per_second else None

    def admit(self, active: int) -> float | None:
        """None if the call may start now; else seconds to wait before retrying."""
        if self.max_active and active >= self.max_active:
            return ACTIVE_RETRY_SECONDS
        if self.bucket is None:
            return None
        wait = self.bucket.wait()
        if wait:
            return wait
        self.bucket.take()
        return None


class TokenBucket:
    """``rate`` starts per second, in bursts of up to max(1, rate)."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.updated = clock()

    def wait(self) -> float:
        """Seconds until a start is allowed; 0 if it is now (nothing is taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0

    @property
    def full(self) -> bool:
        return self.wait() == 0.0 and self.tokens >= self.burst


class LegLimits:
    """Limits per trunk and per agent (``[limits]``).

    A call's agent is leg A's target; an agent who answered leg B of a call in
    progress is on that call too. A call's trunks are those leg A and leg B's
    targets are dialed through (``Backend.trunk_of``): a call counts once on
    each trunk it uses. Calls in progress are counted from the live calls;
    a call admitted and not yet live holds its place until it is.
    """

    def __init__(self, config: LimitsConfig, trunk_of: Callable[[str], str | None],
                 calls: Mapping[str, ActiveCall], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.config = config
        self.trunk_of = trunk_of
        self.calls = calls
        self.clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._starting: dict[str, tuple[set[str], set[str]]] = {}  # call id -> (agents, trunks)
        # Each live call's (agents, trunks), worked out again only when its
        # attempt or its agent changes: every request counts every live call.
        self._usage: dict[str, tuple[tuple[int, str | None], set[str], set[str]]] = {}
        self._limited = bool(config.agent_max_active or config.agent_calls_per_second
                             or config.trunk_max_active or config.trunk_calls_per_second)

    def admit(self, call_id: str, legs: Sequence[tuple[str, str]]) -> None:
        """``legs``: (field, normalised target), leg A first, then leg B's
        targets known now. TrunkLimit or AgentLimit if over a limit; else the
        call holds its place until :meth:`release`."""
        if not self._limited:
            return
        field_a, agent = legs[0]
        trunks: dict[str, str] = {}  # trunk -> the first field dialed through it
        for field, target in legs:
            trunk = self.trunk_of(target)
            if trunk is not None:
                trunks.setdefault(trunk, field)
        agents_busy, trunks_busy = self._in_progress()
        limits = self.config
        buckets: list[TokenBucket] = []
        self._check(AgentLimit, "agent", agent, field_a, agents_busy.get(agent, 0),
                    limits.agent_max_active, "limits.agent_max_active",
                    limits.agent_calls_per_second, "limits.agent_calls_per_second", buckets)
        for trunk, field in trunks.items():
            self._check(TrunkLimit, "trunk", trunk, field, trunks_busy.get(trunk, 0),
                        limits.trunk_max_active, "limits.trunk_max_active",
                        limits.trunk_calls_per_second, "limits.trunk_calls_per_second", buckets)
        for bucket in buckets:  # only once every limit passed
            bucket.take()
        self._starting[call_id] = ({agent}, set(trunks))

    def release(self, call_id: str) -> None:
        """The call is live (and counted as such) or was never placed."""
        self._starting.pop(call_id, None)

    def _check(self, refusal: type[CallRefused], kind: str, key: str, field: str, active: int,
               max_active: int, active_rule: str, rate: float, rate_rule: str,
               buckets: list[TokenBucket]) -> None:
        if max_active and active >= max_active:
            raise refusal(f"{field}: {kind} {key} has {active} calls in progress, the most "
                          f"{active_rule} allows; retry after Retry-After seconds",
                          field=field, rule=active_rule, **{kind: key}, active=active,
                          limit=max_active, retry_after=ACTIVE_RETRY_SECONDS)
        if not rate:
            return
        bucket = self._bucket(kind, key, rate)
        wait = bucket.wait()
        if wait:
            raise refusal(f"{field}: {kind} {key} is at {rate:g} calls started per second, "
                          f"the most {rate_rule} allows; retry after Retry-After seconds",
                          field=field, rule=rate_rule, **{kind: key}, limit=rate,
                          retry_after=round(wait, 3))
        buckets.append(bucket)

    def _bucket(self, kind: str, key: str, rate: float) -> TokenBucket:
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = self._buckets[(kind, key)] = TokenBucket(rate, self.clock)
        return bucket

    def _in_progress(self) -> tuple[dict[str, int], dict[str, int]]:
        agents: dict[str, int] = {}
        trunks: dict[str, int] = {}
        usage = {}
        for call_id, call in self.calls.items():
            if call_id in self._starting or call.core.finished:
                continue
            key = (len(call.core.attempts), call.agent)
            known = self._usage.get(call_id)
            if known is None or known[0] != key:
                known = (key, *self._used_by(call))
            usage[call_id] = known
            _, call_agents, call_trunks = known
            for agent in call_agents:
                agents[agent] = agents.get(agent, 0) + 1
            for trunk in call_trunks:
                trunks[trunk] = trunks.get(trunk, 0) + 1
        self._usage = usage
        for call_agents, call_trunks in self._starting.values():
            for agent in call_agents:
                agents[agent] = agents.get(agent, 0) + 1
            for trunk in call_trunks:
                trunks[trunk] = trunks.get(trunk, 0) + 1
        return agents, trunks

    def _used_by(self, call: ActiveCall) -> tuple[set[str], set[str]]:
        plan = call.core.plan
        agents = {plan.leg_a} | ({call.agent} if call.agent else set())
        if call.core.attempts:
            targets: Sequence[str] = call.core.attempts[-1]["targets"]
        else:
            targets = plan.first_attempt.targets if plan.first_attempt else ()
        trunks = {self.trunk_of(t) for t in (plan.leg_a, *targets)}
        return agents, {t for t in trunks if t is not None}
