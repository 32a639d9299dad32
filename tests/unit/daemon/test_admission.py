"""Admission control with a clock the test moves."""

from __future__ import annotations

import pytest

from controller.api.errors import retry_after_header
from controller.daemon.admission import Admission
from tests.unit.conftest import Clock


def test_calls_per_second_is_a_token_bucket() -> None:
    clock = Clock()
    admission = Admission(calls_per_second=2, max_active=0, clock=clock)
    assert admission.admit(0) is None
    assert admission.admit(0) is None
    wait = admission.admit(0)
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert admission.admit(0) is None
    assert admission.admit(0) is not None


def test_active_calls_limit() -> None:
    admission = Admission(calls_per_second=0, max_active=3, clock=Clock())
    assert admission.admit(2) is None
    assert admission.admit(3) == 1.0


def test_no_limits_admit_everything() -> None:
    admission = Admission(0, 0, clock=Clock())
    assert all(admission.admit(10_000) is None for _ in range(1000))


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]
