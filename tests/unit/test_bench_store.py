"""The store bench's options (bench/store.py): how many calls it places, and
how many of them it expects the big store to refuse as do-not-call."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.store import CALLS, OUT, arguments, on_dnc


def test_by_default_it_places_its_calls_and_writes_the_documented_figures() -> None:
    args = arguments([])
    assert (args.calls, args.out) == (CALLS, OUT)


def test_a_quick_run_places_fewer_calls_and_writes_elsewhere(tmp_path: Path) -> None:
    args = arguments(["--calls", "45", "--out", str(tmp_path / "quick.json")])
    assert (args.calls, args.out) == (45, tmp_path / "quick.json")


@pytest.mark.parametrize("calls", ["0", "-3", "many"])
def test_a_count_of_calls_that_is_not_one_or_more_is_refused(
        calls: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments(["--calls", calls])
    assert "--calls" in capsys.readouterr().err


@pytest.mark.parametrize(("calls", "refused"), [(600, 60), (45, 5), (1, 1), (10, 1), (11, 2)])
def test_every_tenth_call_from_the_first_is_on_the_do_not_call_list(calls: int,
                                                                     refused: int) -> None:
    assert sum(map(on_dnc, range(calls))) == refused
