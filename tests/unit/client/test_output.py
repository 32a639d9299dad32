"""What the client prints for a person: what the daemon stored reaches the
terminal as text, never as control sequences."""

from __future__ import annotations

import pytest

from controller.client.output import print_table, printable, when


def test_control_and_bidi_characters_are_shown_escaped() -> None:
    assert printable("red\x1b[31m\nnext\u202egnp.exe") == "red\\u001b[31m\\u000anext\\u202egnp.exe"
    assert printable(None) == "-"
    assert printable("accents stay: é ü") == "accents stay: é ü"


def test_long_cells_are_cut_and_whole_values_kept_when_asked() -> None:
    assert printable("x" * 100, limit=10) == "x" * 9 + "…"
    assert printable("x" * 100, limit=None) == "x" * 100


def test_tables_line_up_their_columns(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["NAME", "N"], [["sales", 2], ["lab-desk", None]])
    assert capsys.readouterr().out.splitlines() == [
        "NAME      N", "sales     2", "lab-desk  -"]


def test_only_numbers_are_times() -> None:
    assert when(None) == "-" and when("1700000000") == "-" and when(True) == "-"
    assert when(1_700_000_000).startswith("2023-11-1")
