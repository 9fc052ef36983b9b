"""
The WebSocket handshake's C{Origin} check, against cross-site WebSocket
hijacking: a page on another site must not open a socket with our user's
cookies.
"""

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _hostAndPort(netloc: str, scheme: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        return netloc.lower(), None
    return (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def originAllowed(origin: str | None, host: str | None, allowed: tuple[str, ...] = ()) -> bool:
    """
    Whether a handshake from C{origin} may open a WebSocket on a server
    reached as C{host} (the request's C{Host} header).

    Allowed: no C{Origin} at all (not a browser, so no cookies to hijack);
    the page's own origin, i.e. the same host and port as C{Host}, so it
    works behind a proxy that keeps C{Host}; and any origin in C{allowed}.
    """
    if origin is None:
        return True
    origin = origin.strip()
    if origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    return _hostAndPort(parts.netloc, parts.scheme) == _hostAndPort(host, parts.scheme)
