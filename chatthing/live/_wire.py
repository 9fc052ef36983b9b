"""
The wire protocol: JSON text frames, one object each, told apart by C{type}.

This module turns bytes into checked frames and frames into bytes; it knows
nothing of sockets or elements.  C{docs/protocol.md} is its specification.
"""

import json
from typing import Any

from ._errors import ProtocolError

#: Bumped on any change a deployed client would notice.
PROTOCOL_VERSION = 1

#: Frames larger than this get a C{FrameTooLarge} error reply and are dropped;
#: the connection stays up.
MAX_FRAME_BYTES = 64 * 1024

#: Frames larger than this are refused by the WebSocket layer itself, which
#: closes the connection with code 1009 ("message too big").
HARD_MAX_FRAME_BYTES = 1024 * 1024

HELLO = "hello"
WELCOME = "welcome"
RESUMED = "resumed"
CALL = "call"
RESULT = "result"
ERROR = "error"
EMIT = "emit"
ACK = "ack"
LEAVE = "leave"

#: Frames that carry a C{seq} and are replayed after a reconnection.
NUMBERED = frozenset({CALL, RESULT, ERROR})

#: WebSocket close codes the runtime uses (RFC 6455, section 7.4; 4000-4999
#: are ours, see docs/protocol.md).
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_SERVER_ERROR = 1011
CLOSE_REPLACED = 4001
CLOSE_TOO_FAR_BEHIND = 4008
#: The element cannot be shown (its template or module is broken): final,
#: the page shows why and does not reconnect.
CLOSE_ELEMENT_UNAVAILABLE = 4010

#: Close codes with which a page says it is leaving on purpose.
LEAVING_CODES = frozenset({1000, 1001})

#: Close codes with which the server ends a misbehaving page's session at
#: once: protocol errors (1002, 1007 invalid UTF-8, 1008 a frame flood,
#: 1009 too big), and failures to make its element (1011).
ENDING_CODES = frozenset({1002, 1007, 1008, 1009, 1011})


def isAck(frame: dict[str, Any]) -> bool:
    """
    Whether C{frame} is a well-formed C{ack}, which has a rate limit of its
    own (a malformed one is answered and logged, so it counts as a frame).
    """
    seq = frame.get("seq")
    return (frame["type"] == ACK and isinstance(seq, int) and not isinstance(seq, bool)
            and seq >= 0)


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_asciiEncoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class FrameTooLarge(ProtocolError):
    """
    A frame exceeded L{MAX_FRAME_BYTES}.
    """


def encode(frame: dict[str, Any]) -> bytes:
    """
    The UTF-8 bytes of C{frame}, compact.
    """
    text = _encoder.encode(frame)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: JSON can carry one ("\ud800", which a page may
        # send), UTF-8 cannot; escape it, and every non-ASCII character.
        return _asciiEncoder.encode(frame).encode("ascii")


def decode(payload: bytes, isBinary: bool, maxBytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """
    The frame held by one WebSocket message.

    @raise ProtocolError: (or L{FrameTooLarge}) naming what is wrong.
    """
    if isBinary:
        raise ProtocolError("binary frames are not supported; send JSON text")
    if len(payload) > maxBytes:
        raise FrameTooLarge(
            f"frame of {len(payload)} bytes exceeds the limit of "
            f"{maxBytes} bytes"
        )
    try:
        frame = json.loads(payload)
    except (ValueError, RecursionError):
        # RecursionError: nested too deeply for the decoder (e.g. "[[[[...").
        raise ProtocolError("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("frame must be a JSON object")
    if not isinstance(frame.get("type"), str):
        raise ProtocolError('frame has no "type" string')
    return frame


def callId(frame: dict[str, Any]) -> int | None:
    """
    The frame's C{id} if it is a usable call id, so an error reply can name
    the call it answers; else L{None}.
    """
    value = frame.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def requireCallId(frame: dict[str, Any]) -> int:
    value = callId(frame)
    if value is None:
        raise ProtocolError(f'"{frame["type"]}" frame needs an integer "id" >= 0')
    return value


def parseCall(frame: dict[str, Any]) -> tuple[int, str, list]:
    """
    The id, method name and argument list of a C{call} frame.
    """
    ident = requireCallId(frame)
    method = frame.get("method")
    if not isinstance(method, str):
        raise ProtocolError('"call" frame needs a "method" string')
    args = frame.get("args", [])
    if not isinstance(args, list):
        raise ProtocolError('"call" frame\'s "args" must be a list')
    return ident, method, args


def parseError(frame: dict[str, Any]) -> tuple[str, str]:
    """
    The name and message of an C{error} frame's C{error} object.
    """
    error = frame.get("error")
    if not isinstance(error, dict):
        raise ProtocolError('"error" frame needs an "error" object')
    name = error.get("name")
    message = error.get("message")
    return (
        name if isinstance(name, str) else "Error",
        message if isinstance(message, str) else "",
    )


def optionalSeq(frame: dict[str, Any], field: str = "seq") -> int | None:
    """
    The frame's sequence number C{field}, if it has one.

    @raise ProtocolError: if it is there but not an integer >= 0.
    """
    value = frame.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f'"{field}" must be an integer >= 0')
    return value


def parseResume(frame: dict[str, Any]) -> tuple[str, int, dict[str, int]] | None:
    """
    The session, last frame seen and stream offsets a C{hello} asks to
    resume, or L{None} for a new session.
    """
    resume = frame.get("resume")
    if resume is None:
        return None
    if not isinstance(resume, dict) or not isinstance(resume.get("session"), str):
        raise ProtocolError('"resume" must be an object with a "session" string')
    seq = optionalSeq(resume) or 0
    streams = resume.get("streams", {})
    if not isinstance(streams, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in streams.values()
    ):
        raise ProtocolError('"resume.streams" must map stream names to offsets >= 0')
    return resume["session"], seq, streams


def emitFrame(stream: str, offset: int, method: str, args: tuple | list) -> dict[str, Any]:
    return {"type": EMIT, "stream": stream, "offset": offset, "method": method, "args": list(args)}


def passingFrame(stream: str, method: str, args: tuple | list) -> dict[str, Any]:
    """
    An emit frame of a stream that is not replayed: it has no offset, and
    the page runs it whenever it comes.
    """
    return {"type": EMIT, "stream": stream, "method": method, "args": list(args)}


def notifyFrame(method: str, args: tuple | list) -> dict[str, Any]:
    """
    An emit frame for one page: no stream, numbered (C{seq}) by its
    session when sent, so replayed like a call, but never answered.
    """
    return {"type": EMIT, "method": method, "args": list(args)}


def callFrame(ident: int, method: str, args: tuple | list) -> dict[str, Any]:
    return {"type": CALL, "id": ident, "method": method, "args": list(args)}


def resultFrame(ident: int, value: Any) -> dict[str, Any]:
    return {"type": RESULT, "id": ident, "value": value}


def errorFrame(ident: int | None, name: str, message: str) -> dict[str, Any]:
    """
    An error reply.  C{ident} is the call it answers, or L{None} for a frame
    that could not be tied to a call.
    """
    return {"type": ERROR, "id": ident, "error": {"name": name, "message": message}}


def errorFrameFor(ident: int | None, error: BaseException) -> dict[str, Any]:
    """
    The error reply that tells the peer what C{error} was: its class name and
    message, never a traceback.
    """
    return errorFrame(ident, type(error).__name__, str(error))
