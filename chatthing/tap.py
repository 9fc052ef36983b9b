"""
The C{chat-widget} twistd plugin's options and service, in the shape of
C{twisted.web.tap}.

    twistd -n chat-widget --element=chatthing.chatterbox.chat
"""

import inspect
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.python import usage
from twisted.python.reflect import namedAny

from .admin import adminSite, readToken
from .live import LiveElement, LiveSite
from .listening import ListeningService


def loadElementFactory(dottedName: str) -> Callable[[], LiveElement]:
    """
    The element factory named by C{dottedName}.

    @raise usage.UsageError: with a one-line reason if it cannot be imported,
        is not callable with no arguments, or is a class that is not a
        L{LiveElement}.
    """
    try:
        factory = namedAny(dottedName)
    except Exception as e:
        raise usage.UsageError(
            f"--element {dottedName!r} cannot be imported: {type(e).__name__}: {e}"
        ) from None
    if not callable(factory):
        raise usage.UsageError(f"--element {dottedName!r} is not callable")
    if inspect.isclass(factory) and not issubclass(factory, LiveElement):
        raise usage.UsageError(f"--element {dottedName!r} is a class, but not a LiveElement")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise usage.UsageError(
            f"--element {dottedName!r} must be callable with no arguments"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): trust it
    return factory


def alertTarget(factory: Any) -> Callable[[str], Any] | None:
    """
    Where operator alerts go: the C{wall(text)} of the object the factory is
    a bound method of (C{ChatRoom().makeChatter}), or of the factory itself.
    """
    owner = getattr(factory, "__self__", factory)
    wall = getattr(owner, "wall", None)
    return wall if callable(wall) else None


class Options(usage.Options):
    synopsis = "--element DOTTED.NAME [options]"
    longdesc = (
        "Serve a live element to browsers: the page, its JavaScript and its "
        "WebSocket on one port. For the tutorial's chat: "
        "twistd -n chat-widget --element=chatthing.chatterbox.chat"
    )

    optParameters = [
        ["element", "e", None,
         "Dotted name of a zero-argument callable returning a LiveElement, "
         "called once per page (required), e.g. chatthing.chatterbox.chat."],
        ["port", "p", "8080",
         "TCP port to serve on, all interfaces, 0-65535; ignored if --listen is given."],
        ["admin-token-file", None, None,
         "File holding the secret token for the admin endpoint; without it the "
         "admin endpoint is off."],
        ["admin-listen", None, "tcp:8081:interface=127.0.0.1",
         "Endpoint description for the admin endpoint (used only with --admin-token-file)."],
        ["title", None, "chatthing", "Title of the page."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Endpoint description to serve on, e.g. tcp:8080:interface=127.0.0.1
        or ssl:8443:privateKey=key.pem; repeatable; overrides --port.
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        if self["element"] is None:
            raise usage.UsageError("--element is required, e.g. --element=chatthing.chatterbox.chat")
        self["elementFactory"] = loadElementFactory(self["element"])
        if not self["listen"]:
            try:
                port = int(self["port"])
            except ValueError:
                port = -1
            if not 0 <= port <= 65535:
                raise usage.UsageError(f"--port must be a number from 0 to 65535, not {self['port']!r}")
            self["listen"] = [f"tcp:{port}"]
        self["adminToken"] = None
        if self["admin-token-file"] is not None:
            self["adminToken"] = readToken(self["admin-token-file"])
            self["alertTarget"] = alertTarget(self["elementFactory"])
            if self["alertTarget"] is None:
                raise usage.UsageError(
                    f"--admin-token-file was given, but {self['element']!r} has no wall() "
                    "to send alerts to"
                )


def makeService(config: Options) -> MultiService:
    """
    One listening service per C{--listen} address for the site, plus the
    admin endpoint's if a token is configured.
    """
    service = MultiService()
    site = LiveSite(config["elementFactory"], title=config["title"])
    for description in config["listen"]:
        ListeningService(description, site, "chat").setServiceParent(service)
    if config["adminToken"] is not None:
        ListeningService(
            config["admin-listen"], adminSite(config["adminToken"], config["alertTarget"]), "admin"
        ).setServiceParent(service)
    return service
