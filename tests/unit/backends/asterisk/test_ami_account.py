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
from controller.backends.asterisk.transit import WAITING_APPLICATIONS

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
    assert settings["read"] == ["call,user,dialplan"]
    assert set(EVENT_CLASSES.split(",")) <= set(settings["read"][0].split(","))


def passes(event: str) -> bool:
    """Whether any of the account's eventfilters lets the event through: each
    is a POSIX extended regex searched in the whole event's text, where `.`
    matches line ends too (Asterisk compiles them without REG_NEWLINE)."""
    return any(re.search(posix.replace("[[:space:]]", r"\s"), event, re.DOTALL)
               for posix in account()["eventfilter"])


def newexten(context: str, application: str) -> str:
    """A Newexten as the lab's Asterisk 22 sends it (headers in its order)."""
    return ("Event: Newexten\r\nPrivilege: dialplan,all\r\nTimestamp: 1796278308.485217\r\n"
            "Channel: PJSIP/lab-answer-a-00000001\r\nChannelState: 6\r\n"
            "ChannelStateDesc: Up\r\nLanguage: en\r\nAccountCode: \r\n"
            f"Context: {context}\r\nExten: s\r\nPriority: 3\r\n"
            "Uniqueid: 349047b5-a7e0-465e-bd49-f285c9c2fcfb\r\n"
            "Linkedid: 349047b5-a7e0-465e-bd49-f285c9c2fcfb\r\nExtension: s\r\n"
            f"Application: {application}\r\nAppData: 30\r\n\r\n")


def test_the_event_filter_passes_every_event_the_translator_reads() -> None:
    read = list(EVENT_HANDLERS)
    handlers = [name[1:] for name in vars(AmiEventTranslator)
                if name.startswith("_") and name[1:2].isupper()]
    assert sorted(read) == sorted(handlers), "every handler is in the translator's table"
    for name in read:
        assert passes(f"Event: {name}\r\n"), name
    assert not passes("Event: VarSet\r\n")
    assert not passes("Event: MixMonitorStart\r\n")


def test_the_event_filter_passes_the_newexten_of_the_dialplans_waits_only() -> None:
    for application in WAITING_APPLICATIONS:
        assert passes(newexten("callconnect-hold", application)), application
    assert passes(newexten("callconnect-incoming", "Wait"))
    assert not passes(newexten("callconnect-hold", "Set"))
    assert not passes(newexten("callconnect-hold", "WaitExten"))
    assert not passes(newexten("from-internal", "Dial")), "the PBX's own dialplan stays out"


def test_every_wait_the_controller_redirects_from_is_its_own_priority() -> None:
    # Asterisk raises no Newexten for an application run by ExecIf.
    dialplan = (ASTERISK / "extensions_callconnect.conf").read_text()
    for line in dialplan.splitlines():
        if "ExecIf(" in line and not line.lstrip().startswith(";"):
            assert not any(f"{app}(" in line for app in WAITING_APPLICATIONS), line


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
