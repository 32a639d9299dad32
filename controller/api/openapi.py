"""Print the API's OpenAPI document (checked in as docs/openapi.json):
python -m controller.api.openapi > docs/openapi.json"""

from __future__ import annotations

import json
from typing import cast

from controller.api.app import create_app
from controller.api.interface import Operations


def document() -> str:
    # The routes reach the daemon only when they are called, never to describe themselves.
    app = create_app(cast("Operations", None))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
