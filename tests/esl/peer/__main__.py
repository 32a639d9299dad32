"""``python -m tests.esl.peer record <fixture folder>``: the translator's
fixtures, recorded from every lab scenario on a peer (scenarios.py)."""

import asyncio
import sys
from pathlib import Path

from .scenarios import record

if len(sys.argv) != 3 or sys.argv[1] != "record":
    sys.exit("usage: python -m tests.esl.peer record <fixture folder>")
asyncio.run(record(Path(sys.argv[2])))
