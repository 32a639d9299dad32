"""tools/check_cycles.py on small packages written for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import check_cycles


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cycles_through_type_checking_function_level_and_namespace_imports_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {
        "cyclic/__init__.py": "",
        "cyclic/a.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from cyclic.b import B\n",
        "cyclic/b.py": "def load() -> None:\n    from cyclic.a import A\n",
        # A folder without __init__.py, as controller/daemon is.
        "cyclic/loose/c.py": "import cyclic.d\n",
        "cyclic/d.py": "from cyclic.loose import c\n",
        "cyclic/e.py": "import cyclic.a\n",  # imports into a cycle, is on none
    })
    assert check_cycles.main([str(tmp_path / "cyclic")]) == 1
    out = capsys.readouterr().out
    assert "import cycle: cyclic.a -> cyclic.b -> cyclic.a" in out
    assert "import cycle: cyclic.d -> cyclic.loose.c -> cyclic.d" in out
    assert f"{tmp_path}/cyclic/a.py:4: from cyclic.b import B" in out
    assert f"{tmp_path}/cyclic/b.py:2: from cyclic.a import A" in out
    assert f"{tmp_path}/cyclic/loose/c.py:1: import cyclic.d" in out
    assert "cyclic.e" not in out
    assert "2 import cycle(s)" in out


def test_a_package_without_cycles_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {
        "acyclic/__init__.py": "",
        "acyclic/a.py": "from acyclic import b\n",
        "acyclic/b.py": "def load() -> None:\n    import acyclic.loose.c\n",
        "acyclic/loose/c.py": "import json\n",
    })
    assert check_cycles.main([str(tmp_path / "acyclic")]) == 0
    assert capsys.readouterr().out.endswith("no import cycles\n")
