"""
The baseline: the least a broadcast server on Autobahn can do for the same
load, so that the bench can say what chatthing's features cost next to it.

    python -m chatthing.bench.baseline --listen tcp:0:interface=127.0.0.1

It follows Autobahn's own prepared-broadcast example (encode once with
C{prepareMessage}, C{sendPreparedMessage} to every connection) and speaks
only the part of the live protocol the load generator uses, with the same
bytes on the wire as chatthing:

- a C{hello} is answered with a C{welcome} (a session string, no element);
- a C{call} is answered with a numbered C{result}: C{setUsername} returns
  the name; C{say} first sends every connection one prepared C{emit} of the
  stream C{room} (C{displayUserMessage}, numbered by an offset), then
  answers C{null};
- C{ack} frames, and anything else, are ignored.

No rooms, limits, history, presence, resumption, heartbeats or logs per
page: those are what chatthing adds, and what the comparison prices.
"""

import json
import secrets
import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.python import usage
from twisted.python.failure import Failure

from ..commandline import parseCommandLine

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(frame: dict[str, Any]) -> bytes:
    """
    A frame's bytes, encoded as chatthing encodes its own (compact JSON,
    UTF-8, fields in the same order).
    """
    return _encoder.encode(frame).encode("utf-8")


class BaselinePage(WebSocketServerProtocol):
    """
    One connection: welcomed, then answered and broadcast to.
    """

    username: str | None = None
    sentSeq = 0
    welcomed = False

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = json.loads(payload)
            kind = frame["type"]
        except (ValueError, TypeError, KeyError):
            return
        if kind == "hello" and not self.welcomed:
            self.welcomed = True
            self.sendMessage(encode({
                "type": "welcome", "version": 1, "session": secrets.token_urlsafe(16),
                "element": {"html": None, "module": None, "widget": None},
                "limits": {"maxFrameBytes": 65536},
            }))
            self.factory.pages.add(self)
        elif kind == "call" and self.welcomed:
            self.answer(frame.get("id"), frame.get("method"), frame.get("args") or [])

    def answer(self, ident: Any, method: Any, args: list) -> None:
        value = None
        if method == "setUsername" and args:
            self.username = value = str(args[0])
        elif method == "say" and args:
            self.factory.broadcast(self.username, args[0])
        self.sentSeq += 1
        self.sendMessage(encode({"type": "result", "id": ident, "value": value, "seq": self.sentSeq}))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.pages.discard(self)
        super().connectionLost(reason)


class BaselineFactory(WebSocketServerFactory):
    """
    Every welcomed connection, and the room's offset.
    """

    protocol = BaselinePage

    def __init__(self) -> None:
        super().__init__()
        self.pages: set[BaselinePage] = set()
        self.offset = 0

    def broadcast(self, username: str | None, text: Any) -> None:
        self.offset += 1
        message = self.prepareMessage(encode({
            "type": "emit", "stream": "room", "offset": self.offset,
            "method": "displayUserMessage", "args": [username, text],
        }))
        for page in self.pages:
            page.sendPreparedMessage(message)


class BaselineOptions(usage.Options):
    optParameters = [
        ["listen", None, "tcp:8080:interface=127.0.0.1", "Endpoint description to serve on."],
    ]


def main(argv: list[str] | None = None) -> None:
    options = BaselineOptions()
    if not parseCommandLine(options, argv, "chatthing.bench.baseline"):
        sys.exit(2)

    def serve(reactor) -> Deferred:
        d = endpoints.serverFromString(reactor, options["listen"]).listen(BaselineFactory())

        def listening(port) -> Deferred:
            address = port.getHost()
            # The line the bench waits for, as chatthing's "chat listening on".
            print(f"baseline listening on http://{address.host}:{address.port}/", flush=True)
            return Deferred()  # serve until stopped

        return d.addCallback(listening)

    task.react(serve)


if __name__ == "__main__":
    main()
