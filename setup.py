"""The build's one step beyond pyproject.toml: the host files kept at the top of
the repository (see controller/shipped_files.py) go into the wheel as
controller/shipped/, where `callconnect files` finds them. The sdist carries
them through MANIFEST.in. The repository holds one copy of each."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from controller.shipped_files import SHIPPED_PATHS  # noqa: E402


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        # An editable install reads them from the checkout instead.
        if not self.editable_mode:
            for path in self._shipped_outputs():
                source = ROOT / path.relative_to(self._shipped_dir())
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, path)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *map(str, self._shipped_outputs())]

    def _shipped_dir(self) -> Path:
        return Path(self.build_lib) / "controller" / "shipped"

    def _shipped_outputs(self) -> list[Path]:
        sources: list[Path] = []
        for name in SHIPPED_PATHS:
            path = ROOT / name
            sources.extend([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()))
        return [self._shipped_dir() / source.relative_to(ROOT) for source in sources]


setup(cmdclass={"build_py": BuildWithShippedFiles})
