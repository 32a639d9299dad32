"""panoramisk's AMI protocol, minus one way a malformed frame can end the
connection.

panoramisk gives a header that came twice as a list. For the headers it
dispatches a frame by (``Event``, ``Response``, ``ActionID``, ``CommandID``)
the list then meets string methods or a dict lookup, the error escapes
``data_received``, and asyncio closes the transport: one bad frame would cost
the AMI connection. Such a frame is skipped and logged instead.
"""

from __future__ import annotations

from typing import Any

import structlog
from panoramisk.ami_protocol import AMIProtocol

log = structlog.get_logger(__name__)


DISPATCH_HEADERS = ("Event", "Response", "ActionID", "CommandID")


class AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk has no type hints
    def handle_message(self, message: Any) -> Any:
        twice = [name for name in DISPATCH_HEADERS if isinstance(message.get(name), list)]
        if twice:
            log.warning("ami.frame.malformed", error=f"header given twice: {', '.join(twice)}")
            return None
        return super().handle_message(message)
