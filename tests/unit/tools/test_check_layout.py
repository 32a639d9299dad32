"""tools/check_layout.py on small trees written for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import check_layout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_module_over_500_lines_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"pkg/__init__.py": "", "pkg/deep/big.py": "x = 1\n" * 501,
                     "pkg/fits.py": "x = 1\n" * 500})
    assert check_layout.main([str(tmp_path / "pkg")]) == 1
    out = capsys.readouterr().out
    assert out == f"{tmp_path}/pkg/deep/big.py: 501 lines, over the limit of 500; split it\n"


def test_asterisk_words_outside_the_asterisk_backend_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/core.py": "ok = 'answered'\nif status == 'NOANSWER':  # DIALSTATUS\n    pass\n",
        "pkg/store.py": "# kept in the AstDB\n",
        "pkg/backends/asterisk/events.py": "DIALSTATUS = {'ANSWER': 1, 'CONGESTION': 2}\n",
    })
    assert check_layout.main([str(tmp_path / "pkg")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": Asterisk")[0] for line in lines] == [
        f"{tmp_path}/pkg/core.py:2", f"{tmp_path}/pkg/core.py:2", f"{tmp_path}/pkg/store.py:1"]
    assert "'NOANSWER'" in lines[0] and "'DIALSTATUS'" in lines[1] and "'AstDB'" in lines[2]


def test_only_whole_words_in_their_own_case_count(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/core.py": "ANSWERED = answer = 'Congestion'\nDIALSTATUS_MAP = NO_ANSWER = 1\n"})
    assert check_layout.asterisk_words(tmp_path / "pkg") == []


def test_a_tree_within_the_rules_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"pkg/__init__.py": "", "pkg/core.py": "x = 1\n" * 500,
                     "pkg/backends/asterisk/events.py": "DIALSTATUS = {'CHANUNAVAIL': 1}\n"})
    assert check_layout.main([str(tmp_path / "pkg")]) == 0
    assert "every module within 500 lines" in capsys.readouterr().out
