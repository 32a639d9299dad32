"""The sdist and the wheel, built as a user would, carry the host files, and a
wheel installed into a fresh venv answers --version and `files` from its own
copy."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from controller import __version__
from controller.shipped_files import shipped_names

ROOT = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0
# The installed venv must not see this checkout through the tests' PYTHONPATH.
CLEAN_ENV = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sdist, then the wheel built from it (python -m build's order), with
    this venv's setuptools: no registry is needed."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert built.returncode == 0, (
        f"python -m build failed (pip install -e '.[test]' installs build and setuptools>=77):\n"
        f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    yield out


def only(folder: Path, pattern: str) -> Path:
    found = list(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def test_the_sdist_carries_the_host_files_and_the_build_script(dist: Path) -> None:
    prefix = f"callconnect-{__version__}/"
    with tarfile.open(only(dist, "callconnect-*.tar.gz")) as sdist:
        for name in [*shipped_names(), "setup.py", "MANIFEST.in", "CHANGELOG.md"]:
            member = sdist.extractfile(prefix + name)
            assert member is not None, f"{name} is not in the sdist"
            assert member.read() == (ROOT / name).read_bytes(), name


def test_the_wheel_carries_the_host_files_as_package_data(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "callconnect-*-py3-none-any.whl")) as wheel:
        for name in shipped_names():
            assert wheel.read(f"controller/shipped/{name}") == (ROOT / name).read_bytes(), name
        metadata = Parser().parsestr(
            wheel.read(f"callconnect-{__version__}.dist-info/METADATA").decode())
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert any(req.startswith("tzdata") for req in metadata.get_all("Requires-Dist", []))


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed. Its dependencies come from this
    venv's site-packages through a .pth file, so no registry is needed; the
    callconnect package itself is the wheel's."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)],
                   check=True, timeout=RUN_TIMEOUT, env=CLEAN_ENV)
    python = root / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", str(only(dist, "callconnect-*.whl"))],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, env=CLEAN_ENV)
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT, env=CLEAN_ENV)
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return root


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(venv / "bin" / "callconnect"), *args], capture_output=True,
                          timeout=RUN_TIMEOUT, check=False, cwd=venv, env=CLEAN_ENV)


def test_the_installed_package_is_the_wheels(venv: Path) -> None:
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import controller; print(controller.__file__)"],
                           capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT, cwd=venv,
                           env=CLEAN_ENV)
    assert Path(where.stdout.strip()).is_relative_to(venv)


def test_version_from_the_installed_wheel(venv: Path) -> None:
    answer = run(venv, "--version")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.decode().strip() == f"callconnect {__version__}"


def test_files_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    listed = run(venv, "files", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.decode().split() == shipped_names()

    shown = run(venv, "files", "show", "packaging/callconnect.service")
    assert shown.stdout == (ROOT / "packaging/callconnect.service").read_bytes()

    installed = run(venv, "files", "install", str(tmp_path / "files"))
    assert installed.returncode == 0, installed.stderr
    for name in shipped_names():
        assert (tmp_path / "files" / name).read_bytes() == (ROOT / name).read_bytes(), name
