"""The host files shipped with callconnect, and the ``callconnect files`` command.

The dialplans, the example config and ``packaging/`` (the systemd unit, the
sysusers.d and tmpfiles.d files) live at the top of the repository. The build
(``setup.py``) copies them into the wheel as ``controller/shipped/``; in a
source checkout (an editable install) they are read where they are.

    callconnect files list
    callconnect files show packaging/callconnect.service
    callconnect files install /tmp/callconnect-files [NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# What is shipped, as paths from the repository's top; setup.py and
# MANIFEST.in ship the same (a packaging test checks the sdist and the wheel).
SHIPPED_PATHS = ("callconnect.example.toml", "dialplans", "packaging")
PACKAGED_DIR = Path(__file__).parent / "shipped"
EXIT_OK, EXIT_BAD_INPUT = 0, 2


class ShippedFileError(Exception):
    """A name that is not shipped, or an install that would overwrite a changed file."""


def shipped_root() -> Path:
    """The folder that holds the shipped paths: the wheel's copy, else the checkout."""
    if PACKAGED_DIR.is_dir():
        return PACKAGED_DIR
    checkout = Path(__file__).parent.parent
    if all((checkout / path).exists() for path in SHIPPED_PATHS):
        return checkout
    raise ShippedFileError(
        f"the shipped files are neither in {PACKAGED_DIR} nor in a source checkout at {checkout}: "
        "reinstall callconnect from its wheel or sdist")


def shipped_names() -> list[str]:
    """Every shipped file, as a path relative to the repository's top."""
    root = shipped_root()
    names: list[str] = []
    for top in SHIPPED_PATHS:
        path = root / top
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        names.extend(file.relative_to(root).as_posix() for file in files)
    return sorted(names)


def read_shipped(name: str) -> bytes:
    if name not in shipped_names():
        raise ShippedFileError(f"{name!r} is not shipped; `callconnect files list` names them all")
    return (shipped_root() / name).read_bytes()


def install_shipped(target: Path, names: list[str], force: bool) -> list[Path]:
    """Copy the named files (all when none are named) under ``target``, keeping
    their paths. A file there already with other content is overwritten only
    with ``force``; otherwise nothing is written. Returns the files written."""
    contents = {name: read_shipped(name) for name in (names or shipped_names())}
    changed = [name for name, data in contents.items()
               if (target / name).exists() and (target / name).read_bytes() != data]
    if changed and not force:
        raise ShippedFileError(
            f"{', '.join(str(target / name) for name in changed)} already exist with other "
            "content: nothing was written; pass --force to overwrite them")
    written: list[Path] = []
    for name, data in contents.items():
        path = target / name
        if path.exists() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    files = commands.add_parser(
        "files", help="list, print or copy the dialplans, example config, systemd unit, "
        "sysusers.d and tmpfiles.d files shipped with this version")
    actions = files.add_subparsers(dest="files_command", required=True)
    actions.add_parser("list", help="name every shipped file")
    show = actions.add_parser("show", help="print one shipped file")
    show.add_argument("name", help="as `callconnect files list` names it")
    install = actions.add_parser("install", help="copy shipped files into a folder, keeping "
                                 "their paths (all of them unless named)")
    install.add_argument("dir", type=Path, help="the folder to copy into (created if missing)")
    install.add_argument("names", nargs="*", help="only these files")
    install.add_argument("--force", action="store_true",
                         help="overwrite files there that have other content")


def run(args: argparse.Namespace) -> int:
    try:
        if args.files_command == "list":
            print("\n".join(shipped_names()))
        elif args.files_command == "show":
            sys.stdout.buffer.write(read_shipped(args.name))
        else:
            for path in install_shipped(args.dir, args.names, args.force):
                print(f"wrote {path}")
    except (ShippedFileError, OSError) as exc:
        print(f"callconnect files: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
