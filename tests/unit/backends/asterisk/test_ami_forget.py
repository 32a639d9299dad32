"""Forgetting kept outcomes: ended calls in as few Originates as fit a line,
and nothing but call ids reaches the dialplan. The lab test
(tests/lab/test_forget_outcomes.py) checks the entries are gone."""

from __future__ import annotations

import uuid

import pytest

from controller.backends.asterisk.actions import MAX_LINE
from controller.backends.asterisk.forget import forget_action, forget_batches


def test_one_ended_call_is_one_originate_of_a_local_channel() -> None:
    call_id = "5f0c1a2b-0000-4000-8000-000000000001"
    [batch] = forget_batches([call_id])
    action = forget_action(batch)
    assert action["Channel"] == "Local/forget@callconnect-forget"
    assert action["Application"] == "NoOp" and action["Async"] == "true"
    assert action["Variable"] == f"CC_FORGET={call_id}"


def test_many_ended_calls_fill_each_line_and_keep_every_id_once() -> None:
    call_ids = [str(uuid.uuid4()) for _ in range(100)]
    batches = forget_batches(call_ids)
    assert [call_id for batch in batches for call_id in batch] == call_ids
    assert len(batches) == 4  # 27 uuids fit a line
    for batch in batches:
        variable = forget_action(batch)["Variable"]
        assert len(f"Variable: {variable}\r\n") <= MAX_LINE
        assert variable.split("=", 1)[1].split("&") == batch


def test_nothing_is_a_batch_of_nothing() -> None:
    assert forget_batches([]) == []


@pytest.mark.parametrize("bad", ["x@other-context", "5f0c/../x", "5f0c\r\nAction: Hangup", "",
                                 "5f0c&other", "5f0c,CC_OTHER=1"])
def test_anything_but_a_call_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a call id"):
        forget_batches(["5f0c1a2b", bad])
