"""
Keeping an idle page connection small.

An idle page costs what its objects hold while it waits.  A connection
keeps about 70 attributes (Autobahn's, Twisted's and the runtime's); in an
instance dict that is a table of 128 entries, over 2 KiB a page, and
every lookup in it, on the fan-out's path too, lands somewhere new in
memory.  L{CONNECTION_ATTRIBUTES} lists them for C{__slots__}: 8 bytes
each, at fixed places in the connection itself.

Besides, things Autobahn does cost more than everything the runtime adds:

- it copies each of its 29 options from the factory into every connection
  (L{FactoryOption} reads them from the factory instead), which takes the
  connection's attribute table past 85 entries, where Python doubles it
  (1.7 KiB more a page);
- it keeps the opening handshake's bytes and headers for the life of the
  connection, and a queue for writes trickled out over several turns,
  which allocates room for 64 entries however few it holds
  (L{forgetHandshake} lets go of the first; L{shareEmptySendQueue} gives
  every connection one empty queue until it asks to trickle:
  L{keepSendQueue}).

(The third, twisted.web's request and channel staying alive behind a
WebSocket, is let go by L{chatthing.live._web.LiveSocketResource}.)
"""

from collections import deque
from types import MappingProxyType
from typing import Any, TypeVar

import autobahn.websocket.protocol as _autobahnProtocol

#: A WebSocket server connection class (which has Autobahn's C{CONFIG_ATTRS}).
_Connection = TypeVar("_Connection", bound=_autobahnProtocol.WebSocketServerProtocol)

_UNSET = object()

#: What an open page connection holds, read off one (Autobahn 26.10, Twisted
#: 25): Autobahn's state, its frame parser's, its timers' and handshake's,
#: Twisted's (C{factory}, C{transport}, C{connected}), and the runtime's own
#: (L{chatthing.live._protocol.LiveServerProtocol} adds its flags).
#: C{tests/test_footprint.py} checks that an open connection keeps nothing
#: else in a dict, so a new Autobahn that adds one is noticed.
CONNECTION_ATTRIBUTES = (
    # Twisted's, and txaio's observers
    "factory", "transport", "connected", "_valid_events", "_results",
    # Autobahn: the connection and its state
    "is_closed", "is_open", "_transport_details", "peer", "_perMessageCompress", "trackedTimings",
    "trafficStats", "state", "send_state", "data", "send_queue", "triggered", "utf8validator",
    "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded", "closedByMe",
    "failedByMe", "droppedByMe", "wasClean", "wasNotCleanReason", "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout", "wasCloseHandshakeTimeout", "wasServingFlashSocketPolicyFile",
    "localCloseCode", "localCloseReason", "remoteCloseCode", "remoteCloseReason",
    # Autobahn: timers
    "openHandshakeTimeoutCall", "closeHandshakeTimeoutCall", "autoPingTimeoutCall",
    "autoPingPending", "autoPingPendingCall", "autoPingPendingSeq", "autoPingPendingSent",
    # Autobahn: the opening handshake
    "http_request_data", "http_status_line", "http_headers", "http_request_uri",
    "http_request_path", "http_request_params", "http_request_host", "websocket_version",
    "websocket_protocols", "websocket_origin", "websocket_extensions", "_wskey",
    "websocket_protocol_in_use", "websocket_extensions_in_use", "http_response_data",
    # Autobahn: the frame and message being read
    "inside_message", "current_frame", "current_frame_masker", "_isMessageCompressed",
    "utf8validateIncomingCurrentMessage", "utf8validateLast", "message_is_binary",
    "message_data", "message_data_total_length", "frame_length", "frame_data",
    # L{FactoryOption}s set on this connection itself
    "_ownOptions",
)


def classDefaults(base: type, names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """
    What each of C{names} reads as on C{base}, for those it has a value
    for: a slot hides such a class attribute, so a connection must be given
    it when made (Twisted's C{transport = None}, say).
    """
    defaults = []
    for name in names:
        value = getattr(base, name, _UNSET)
        if value is _UNSET:
            continue
        if callable(value) or hasattr(value, "__get__"):
            raise TypeError(f"{name!r} is a method or descriptor of {base.__name__}, not an attribute")
        defaults.append((name, value))
    return tuple(defaults)

#: What the handshake's headers read as once forgotten (read-only: nothing
#: may add to one map shared by every connection).
_NO_HEADERS: Any = MappingProxyType({})

#: The send queue of a connection that trickles nothing (Autobahn only asks
#: its length unless told to trickle; an empty tuple cannot be added to).
_NO_QUEUE: Any = ()


class FactoryOption:
    """
    An Autobahn option that a connection reads from its factory, unless set
    on the connection itself.  Autobahn copies an option only if the
    connection lacks it, and this descriptor gives every connection all of
    them.
    """

    name: str

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, connection: Any, owner: type | None = None) -> Any:
        if connection is None:
            return self
        own = connection._ownOptions
        if own is None or self.name not in own:
            return getattr(connection.factory, self.name)
        return own[self.name]

    def __set__(self, connection: Any, value: Any) -> None:
        if connection._ownOptions is None:
            connection._ownOptions = {}
        connection._ownOptions[self.name] = value


def readOptionsFromFactory(protocolClass: type[_Connection]) -> type[_Connection]:
    """
    Class decorator: give C{protocolClass} a L{FactoryOption} for each of
    the options Autobahn would copy into every connection (its
    C{CONFIG_ATTRS}).
    """
    for name in protocolClass.CONFIG_ATTRS:
        option = FactoryOption()
        option.__set_name__(protocolClass, name)
        setattr(protocolClass, name, option)
    return protocolClass


def forgetHandshake(connection: Any) -> None:
    """
    Let go of what Autobahn kept of C{connection}'s opening handshake (the
    request's and response's bytes, its headers and parameters), which
    nothing reads once the connection is open.
    """
    connection.http_request_data = connection.http_response_data = b""
    connection.http_status_line = connection.http_request_uri = ""
    connection.http_headers = connection.http_request_params = _NO_HEADERS


def shareEmptySendQueue(connection: Any) -> None:
    """
    Replace C{connection}'s empty send queue by one shared empty queue,
    until L{keepSendQueue} gives it its own.
    """
    if not connection.send_queue:
        connection.send_queue = _NO_QUEUE


def keepSendQueue(connection: Any) -> None:
    """
    Give C{connection} a send queue of its own: it is about to trickle a
    write out (Autobahn's C{sendData} with C{sync} or C{chopsize}).
    """
    if connection.send_queue is _NO_QUEUE:
        connection.send_queue = deque()


def _unformatted(object: object, *args: Any, **kwargs: Any) -> str:
    return "(not formatted)"


def withoutOptionsDump(connectionMade: Any) -> Any:
    """
    Run Autobahn's C{_connectionMade} without the C{pprint} of its 29
    options it makes for a debug line on every new connection, even when
    debug lines go nowhere: 190 µs a connection here, a tenth of what a
    connection costs to open.  (The reactor runs one thing at a time, so
    nothing else sees the module's C{pformat} swapped meanwhile.)
    """
    def _connectionMade(self: Any) -> None:
        pformat, _autobahnProtocol.pformat = _autobahnProtocol.pformat, _unformatted
        try:
            connectionMade(self)
        finally:
            _autobahnProtocol.pformat = pformat
    return _connectionMade
