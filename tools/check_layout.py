"""Layout rules for a package: ``python -m tools.check_layout controller``.

* no module over 500 lines: past that a module holds more than one idea;
* Asterisk's words (DIALSTATUS values, AstDB) only in ``backends/asterisk/``:
  the rest of the controller speaks the switch-neutral terms of controller.core,
  so FreeSWITCH and Asterisk stay interchangeable.

Each breach is printed with its file (and line), and the exit status is 1.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MAX_LINES = 500
ASTERISK_WORDS = re.compile(r"\b(ANSWER|NOANSWER|CHANUNAVAIL|CONGESTION|DIALSTATUS|AstDB)\b")
ASTERISK_HOME = Path("backends", "asterisk")


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    problems: list[str] = []
    for path in _modules(root):
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            problems.append(f"{path}: {count} lines, over the limit of {limit}; split it")
    return problems


def asterisk_words(root: Path) -> list[str]:
    problems: list[str] = []
    home = root / ASTERISK_HOME
    for path in _modules(root):
        if path.is_relative_to(home):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for word in ASTERISK_WORDS.findall(line):
                problems.append(f"{path}:{number}: Asterisk's word {word!r} outside {home}/; "
                                "use controller.core's terms (DialOutcome)")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.check_layout PACKAGE_FOLDER", file=sys.stderr)
        return 2
    root = Path(argv[0])
    problems = long_modules(root) + asterisk_words(root)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{root}: every module within {MAX_LINES} lines; Asterisk's words only in {root / ASTERISK_HOME}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
