"""`callconnect files` in a source checkout: the files are read where they are
kept, and install never overwrites a changed file unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import __version__
from controller.cli import main
from controller.shipped_files import SHIPPED_PATHS, shipped_names

ROOT = Path(__file__).resolve().parents[3]
UNIT = "packaging/callconnect.service"


def test_every_file_under_the_shipped_paths_is_listed() -> None:
    names = shipped_names()
    for expected in ["callconnect.example.toml", "dialplans/asterisk/extensions_callconnect.conf",
                     "dialplans/asterisk/manager_callconnect.conf", UNIT,
                     "packaging/sysusers.d/callconnect.conf", "packaging/tmpfiles.d/callconnect.conf"]:
        assert expected in names
    assert all(name.startswith(SHIPPED_PATHS) for name in names)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"callconnect {__version__}\n"


def test_show_prints_the_file(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["files", "show", UNIT]) == 0
    assert capsysbinary.readouterr().out == (ROOT / UNIT).read_bytes()


def test_show_of_an_unknown_name_says_how_to_find_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["files", "show", "../pyproject.toml"]) == 2
    assert "callconnect files list" in capsys.readouterr().err


def test_install_copies_the_named_files_keeping_their_paths(tmp_path: Path) -> None:
    assert main(["files", "install", str(tmp_path), UNIT]) == 0
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [UNIT]
    assert (tmp_path / UNIT).read_bytes() == (ROOT / UNIT).read_bytes()


def test_install_refuses_to_overwrite_a_changed_file_unless_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "packaging").mkdir()
    (tmp_path / UNIT).write_text("# edited by the admin\n")
    assert main(["files", "install", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / UNIT).read_text() == "# edited by the admin\n"
    assert not (tmp_path / "callconnect.example.toml").exists(), "nothing is written"

    assert main(["files", "install", "--force", str(tmp_path)]) == 0
    assert (tmp_path / UNIT).read_bytes() == (ROOT / UNIT).read_bytes()
    assert (tmp_path / "callconnect.example.toml").exists()
    capsys.readouterr()
    assert main(["files", "install", str(tmp_path)]) == 0, "identical files are no conflict"
    assert capsys.readouterr().out == "", "and are not written again"
