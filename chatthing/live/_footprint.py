"""
Keeping an idle page connection small.

An idle page costs what its objects hold while it waits.  Two things
Autobahn does cost more than everything the runtime adds:

- it copies each of its 29 options from the factory into every connection
  (L{FactoryOption} reads them from the factory instead), which takes the
  connection's attribute table past 85 entries, where Python doubles it
  (1.7 KiB more a page);
- it keeps the opening handshake's bytes and headers for the life of the
  connection (L{forgetHandshake} lets go of them once it is open).

(The third, twisted.web's request and channel staying alive behind a
WebSocket, is let go by L{chatthing.live._web.LiveSocketResource}.)
"""

from types import MappingProxyType
from typing import Any

_UNSET = object()

#: What the handshake's headers read as once forgotten (read-only: nothing
#: may add to one map shared by every connection).
_NO_HEADERS: Any = MappingProxyType({})


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
