"""
The C{Host} check, against DNS rebinding.

A page at C{http://evil.example:8080/} whose name the attacker then points
at C{127.0.0.1} is, to the browser, the same origin as our chat on that
loopback port: it may read our pages and open our WebSocket (its C{Origin}
equals its C{Host}, so the Origin check passes).  What gives it away is the
name it used, which arrives as the C{Host} header: the site serves only the
names it is known by (L{HostCheck}) and answers anything else with 421.

Allowed, always: C{localhost}; an IP address literal equal to the address
the connection arrived at (a browser that typed our address is not being
rebound: an attacker cannot serve a page from that origin); a request with
no C{Host} (not a browser).  Besides those, the names given
(C{--allowed-host}, which also defaults to the machine's own names when the
server listens on all interfaces, see L{listenHosts}).  Ports are not
compared: behind a proxy the public port differs from ours.
"""

import ipaddress
import socket
from typing import Iterable

#: Names every site answers to.
ALWAYS_ALLOWED = ("localhost",)

#: The C{--allowed-host} that turns the check off (behind a proxy that does
#: it).
ANY_HOST = "*"


def hostName(header: str | bytes | None) -> str | None:
    """
    The name or address in a C{Host} header (C{"Chat.Example.com.:8080"} ->
    C{"chat.example.com"}, C{"[::1]:80"} -> C{"::1"}), lower-cased, with no
    port, brackets or final dot; L{None} if there is none or it is not a
    host name at all.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    text = header.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest[1:].isdigit()) or (rest and rest[0] != ":"):
            return None
    else:
        name, colon, port = text.partition(":")
        if colon and not port.isdigit():
            return None
    name = name.rstrip(".")
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return name


def _isAddress(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """
    Which C{Host} names a site answers to.

    @ivar names: the names allowed besides L{ALWAYS_ALLOWED} and the
        connection's own address; C{"*.example.com"} allows every name under
        C{example.com}.
    @ivar anyHost: whether every name is allowed (C{--allowed-host '*'}).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        names = tuple(names)
        self.anyHost = ANY_HOST in names
        allowed = {hostName(n) or n.lower() for n in names if n != ANY_HOST}
        self.suffixes = tuple(n[1:] for n in allowed if n.startswith("*."))
        self.names = frozenset(n for n in allowed if not n.startswith("*.")) | set(ALWAYS_ALLOWED)

    def allows(self, header: str | bytes | None, localAddress: str | None = None) -> bool:
        """
        Whether a request with C{Host: header}, arriving at C{localAddress},
        may be served.
        """
        if self.anyHost or header is None:
            return True
        name = hostName(header)
        if name is None:
            return False
        if name in self.names or any(name.endswith(s) for s in self.suffixes):
            return True
        if localAddress is not None and _isAddress(name):
            try:
                return ipaddress.ip_address(name) == _unmapped(localAddress)
            except ValueError:
                return False
        return False


def _unmapped(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _interface(description: str) -> str | None:
    """
    The C{interface=} of a C{tcp:}/C{ssl:}/C{tcp6:} endpoint description:
    C{""} for all interfaces, L{None} for endpoints with none (C{unix:}).
    """
    kind, _, rest = description.partition(":")
    if kind not in ("tcp", "ssl", "tcp6"):
        return None
    parts = rest.replace("\\:", "\0").split(":")
    for part in parts[1:]:
        key, equals, value = part.partition("=")
        if equals and key == "interface":
            return value.replace("\0", ":")
    return ""


def machineNames() -> set[str]:
    """
    This machine's own names: its host name and fully qualified name.
    """
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        host = hostName(name)
        if host and host != "localhost.localdomain":
            names.add(host)
    return names


def listenHosts(descriptions: Iterable[str]) -> tuple[str, ...]:
    """
    The names a server listening on the endpoint C{descriptions} is known
    by, besides C{localhost} and the address each connection arrives at:
    for one that listens on all interfaces (no C{interface=}, C{0.0.0.0} or
    C{::}), the machine's own host names; for one on a given interface,
    that address (also allowed as the connection's own address).
    """
    names: set[str] = set()
    for description in descriptions:
        interface = _interface(description)
        if interface is None:
            continue
        if interface in ("", "0.0.0.0", "::"):
            names |= machineNames()
        else:
            names.add(interface.lower())
    return tuple(sorted(names))
