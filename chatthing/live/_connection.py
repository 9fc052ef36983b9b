"""
L{PageConnection}: what a session needs of the connection to its page.
"""

from typing import Any, Protocol

from autobahn.websocket.protocol import PreparedMessage


class PageConnection(Protocol):
    """
    What a session needs of the connection it is attached to (implemented by
    L{LiveServerProtocol}, which does not inherit from it: a protocol, so
    that mypy checks the connection against it).
    """

    def sendPayload(self, payload: bytes) -> None: ...
    def sendPrepared(self, message: PreparedMessage) -> None: ...
    def sendLiveFrame(self, frame: dict[str, Any]) -> None: ...
    def replaced(self) -> None: ...
    def expel(self, reason: str) -> None: ...
