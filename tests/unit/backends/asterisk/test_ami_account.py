"""The AMI account and dialplan the controller ships: no class that lets the
secret's holder run a shell, an event filter that lets through every event the
translator reads, and the dialplan steps that replace the actions needing
`system` (MixMonitor, DBDel)."""

from __future__ import annotations

import re
from pathlib import Path

from controller.backends.asterisk import actions
from controller.backends.asterisk.backend import EVENT_CLASSES
from controller.backends.asterisk.events import EVENT_HANDLERS, AmiEventTranslator
from controller.backends.asterisk.forget import CONTEXT_FORGET

ASTERISK = Path(__file__).parents[4] / "dialplans" / "asterisk"


def account() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (ASTERISK / "manager_callconnect.conf").read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            settings.setdefault(key, []).append(value)
    return settings


def test_the_account_has_only_the_classes_the_controller_uses() -> None:
    settings = account()
    assert settings["write"] == ["originate,call,reporting"]
    assert settings["read"] == ["call,user"]
    assert set(EVENT_CLASSES.split(",")) <= set(settings["read"][0].split(","))


def test_the_event_filter_passes_every_event_the_translator_reads() -> None:
    [posix] = account()["eventfilter"]
    event_filter = posix.replace("[[:space:]]", r"\s")  # POSIX class, as Asterisk's regcomp reads it
    read = list(EVENT_HANDLERS)
    handlers = [name[1:] for name in vars(AmiEventTranslator)
                if name.startswith("_") and name[1:2].isupper()]
    assert sorted(read) == sorted(handlers), "every handler is in the translator's table"
    for name in read:
        assert re.search(event_filter, f"Event: {name}\r\n"), name
    assert not re.search(event_filter, "Event: VarSet\r\n")
    assert not re.search(event_filter, "Event: MixMonitorStart\r\n")


def test_the_dialplan_records_and_forgets_without_the_system_class() -> None:
    dialplan = (ASTERISK / "extensions_callconnect.conf").read_text()
    assert "TryExec(MixMonitor(${ARG4}))" in dialplan
    assert "Step: recording-started" in dialplan and "Step: recording-failed" in dialplan
    assert f"[{CONTEXT_FORGET}]" in dialplan
    assert "DB_DELETE(callconnect/${CC_FORGET_ID})" in dialplan


def test_every_context_the_controller_steers_to_is_in_the_dialplan() -> None:
    dialplan = (ASTERISK / "extensions_callconnect.conf").read_text()
    contexts = [value for name, value in vars(actions).items() if name.startswith("CONTEXT_")]
    assert len(contexts) >= 13
    missing = [c for c in contexts if f"\n[{c}]\n" not in dialplan]
    assert not missing, f"contexts the encoders redirect to but the dialplan lacks: {missing}"


def test_no_caller_text_reaches_the_controller_unfiltered() -> None:
    # The one caller-controlled value the inbound dialplan passes on.
    dialplan = (ASTERISK / "extensions_callconnect.conf").read_text()
    uses = [line for line in dialplan.splitlines() if "CALLERID(" in line and not line.startswith(";")]
    assert uses and all("FILTER(0-9+,${CALLERID(num):0:32})" in line for line in uses), uses
