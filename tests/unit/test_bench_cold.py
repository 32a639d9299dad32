"""bench.cold: both components run hot and with each pause, and every ratio
it prints is the cold figure over the hot one (its own figures, not timed)."""

from __future__ import annotations

import re

import pytest

from bench import cold

NAME = re.compile(r"\[cold\]\s+(.+?)\s+hot ")
FIGURE = re.compile(r"(hot|asleep \d+ ms:|busy \d+ ms:) (\d+\.\d+) ms(?: \((\d+\.\d)x\))?")


def test_it_prints_each_component_hot_and_after_each_pause_with_the_ratio(
        capsys: pytest.CaptureFixture[str]) -> None:
    cold.main(["--calls", "6"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[cold] CPU a call, hot")
    figures = {}
    for line in lines[1:]:
        name = NAME.match(line)
        assert name, line
        figures[name.group(1)] = FIGURE.findall(line)
    assert list(figures) == ["switch events", "HTTP (POST /v1/calls)"]
    assert [label for label, _, _ in figures["switch events"]] == [
        "hot", "asleep 2 ms:", "busy 2 ms:", "asleep 20 ms:", "busy 20 ms:"]
    assert [label for label, _, _ in figures["HTTP (POST /v1/calls)"]] == [
        "hot", "asleep 2 ms:", "asleep 20 ms:"]
    for found in figures.values():
        hot = float(found[0][1])
        assert hot > 0
        for _, milliseconds, ratio in found[1:]:
            assert float(ratio) == pytest.approx(float(milliseconds) / hot, abs=0.06)


def test_a_count_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cold.main(["--calls", "0"])
    assert "--calls must be at least 1" in capsys.readouterr().err
