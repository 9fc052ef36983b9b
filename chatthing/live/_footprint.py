"""
Keeping an idle page connection small.

An idle page costs what its objects hold while it waits.  Two things
Autobahn does cost more than everything the runtime adds:

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
from typing import Any

_UNSET = object()

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
        own = connection.__dict__.get(self.name, _UNSET)
        return getattr(connection.factory, self.name) if own is _UNSET else own

    def __set__(self, connection: Any, value: Any) -> None:
        connection.__dict__[self.name] = value


def readOptionsFromFactory(protocolClass: type) -> type:
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
