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

And Autobahn gives every connection objects that an idle page does not
need, some 2 KiB of them (measured with tracemalloc on 1,000 logged-in
pages):

- two Deferreds (C{is_open}, C{is_closed}) that nothing here waits on, and
  a list and a dict of txaio's event names: L{WhenFired} makes the
  Deferreds only when read, and L{EVENTS} is one table for all;
- a C{TrafficStats} of ten counters: one shared by every connection of a
  factory (L{shareTrafficStats}) sums them all;
- the XOR unmasker of the last frame read, and a UTF-8 validator kept
  between messages: L{Validators} lends one to a connection for each text
  message, and L{dropFrameMasker} lets go of the unmasker once its frame
  has been read.
"""

from collections import deque
from operator import attrgetter
from types import MappingProxyType
from typing import Any, TypeVar

import autobahn.websocket.protocol as _autobahnProtocol
from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.defer import Deferred, succeed

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
    # Autobahn: the connection and its state (its is_closed and is_open
    # are L{WhenFired}s, over these two)
    "_isClosed", "_isOpen", "_transport_details", "peer", "_perMessageCompress", "trackedTimings",
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
    # Where its L{FactoryOption}s are read: its factory, or L{OwnOptions}
    "_options",
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


class OwnOptions:
    """
    The options set on one connection, over its factory's (which it reads
    for the others).
    """

    def __init__(self, factory: Any) -> None:
        self._factory = factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


class FactoryOption(property):
    """
    An Autobahn option that a connection reads from its factory, unless set
    on the connection itself.  Autobahn copies an option only if the
    connection lacks it, and this property gives every connection all of
    them.

    Autobahn reads them often (112 times for a page to connect and log
    in, and some ten times a frame), so a read runs no Python code: it is
    C{operator.attrgetter("_options.NAME")}, where the connection's
    C{_options} is its factory (L{LiveServerFactory.buildProtocol} sets
    it), or its L{OwnOptions} once one of them is set on it.
    """

    def __init__(self, name: str) -> None:
        def setOwn(connection: Any, value: Any) -> None:
            options = connection._options
            if not isinstance(options, OwnOptions):
                connection._options = options = OwnOptions(connection.factory)
            setattr(options, name, value)

        super().__init__(attrgetter("_options." + name), setOwn)
        self.name = name


def readOptionsFromFactory(protocolClass: type[_Connection]) -> type[_Connection]:
    """
    Class decorator: give C{protocolClass} a L{FactoryOption} for each of
    the options Autobahn would copy into every connection (its
    C{CONFIG_ATTRS}).
    """
    for name in protocolClass.CONFIG_ATTRS:
        setattr(protocolClass, name, FactoryOption(name))
    return protocolClass


def forgetHandshake(connection: Any) -> None:
    """
    Let go of what Autobahn kept of C{connection}'s opening handshake (the
    request's and response's bytes, its headers and parameters), which
    nothing reads once the connection is open.
    """
    connection.http_request_data = connection.http_response_data = b""
    connection.http_status_line = connection.http_request_uri = connection.http_request_host = ""
    connection.websocket_origin = ""
    connection._wskey = None
    connection.http_headers = connection.http_request_params = _NO_HEADERS
    connection.websocket_protocols = connection.websocket_extensions = _NO_QUEUE
    connection.websocket_extensions_in_use = _NO_QUEUE
    # Read while opening (the peer's address is kept in peer), and by
    # Autobahn's WAMP clients, never by a server connection once open.
    connection._transport_details = None


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


#: txaio's table of the events a connection may fire (Autobahn's one,
#: "message", which nothing here listens to), for every connection.
EVENTS: Any = ("message",)

#: What L{WhenFired} holds once its Deferred has fired and been let go of.
_FIRED = object()


class WhenFired:
    """
    Autobahn's C{is_open} or C{is_closed}: a L{Deferred} made only when
    read (Autobahn reads it to fire it, when the connection opens or
    closes), held in the slot C{slot}.  Once L{letGo} has been told it
    fired, it reads as a new Deferred fired with L{None}.
    """

    def __init__(self, slot: str) -> None:
        self.slot = slot

    def __get__(self, connection: Any, owner: type | None = None) -> Any:
        if connection is None:
            return self
        d = getattr(connection, self.slot)
        if d is _FIRED:
            return succeed(None)
        if d is None:
            d = Deferred()
            setattr(connection, self.slot, d)
        return d

    def __set__(self, connection: Any, value: Any) -> None:
        setattr(connection, self.slot, value)

    def letGo(self, connection: Any) -> None:
        """
        Forget the Deferred of C{connection} once it has fired (whoever
        waited on it has been told).
        """
        d = getattr(connection, self.slot)
        if isinstance(d, Deferred) and d.called:
            setattr(connection, self.slot, _FIRED)


def shareTrafficStats(connection: Any, shared: TrafficStats) -> None:
    """
    Count C{connection}'s traffic in C{shared}, its factory's, instead of in
    a C{TrafficStats} of its own (which Autobahn adds to and never reads).
    """
    connection.trafficStats = shared


def dropFrameMasker(connection: Any) -> None:
    """
    Let go of the unmasker of the frame just read (Autobahn makes one for
    each frame, and keeps the last until the next frame begins).
    """
    connection.current_frame_masker = None


#: What a validator answers for text that is whole and valid.
_VALID = (True, True, 0, 0)


class Validators:
    """
    UTF-8 validators lent to connections one text message at a time: a
    connection reading no message holds none.  At most C{keep} wait to be
    lent again.
    """

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._idle: list[Utf8Validator] = []

    def lend(self, connection: Any) -> None:
        """
        Give C{connection} a validator for the message it begins.
        """
        if connection.utf8validator is None:
            connection.utf8validator = self._idle.pop() if self._idle else Utf8Validator()

    def takeBack(self, connection: Any) -> None:
        """
        C{connection}'s message has ended: keep its validator for another.
        """
        validator, connection.utf8validator = connection.utf8validator, None
        # Its last answer too (Autobahn sets a new one when a message begins).
        connection.utf8validateLast = _VALID
        if validator is not None and len(self._idle) < self.keep:
            self._idle.append(validator)
