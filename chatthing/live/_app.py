"""
L{ILiveApplication}: everything an application offers the runtime and the
C{chat-widget} plugin, declared once; L{LiveApplication}, a base with a
default for each part but the elements; and L{CallableApplication}, the
adapter that makes a plain element factory (a L{LiveElement} class, a
function) such an application.

Why C{zope.interface} and not a C{typing.Protocol}: the plugin is given an
object by its dotted name (C{--element}) and has to turn it into an
application at run time, whatever it is.  A Protocol only helps mypy; an
interface is also a run-time fact (C{ILiveApplication.providedBy(x)},
C{verifyObject}), and its adapter registry is the one place that decides
what a plain callable becomes -- how C{twisted.web} makes resources and
klein makes its session stores pluggable, which our users know.

How an object becomes an application, by C{ILiveApplication(thing)}:

  - an object that provides L{ILiveApplication} (declared with
    C{@implementer(ILiveApplication)}) is itself;
  - the bound C{makeElement} of such an object (C{chatthing.chatterbox.chat}
    is the module-level C{ChatRoom}'s C{makeChatter}, which is its
    C{makeElement}) is that object: the adapter registered for bound
    methods says so, so C{--element=chatthing.chatterbox.chat} serves the
    whole C{ChatRoom} (its rooms, alerts, backplane, metrics);
  - any other callable -- a L{LiveElement} subclass, a function, another
    bound method -- is wrapped in a L{CallableApplication}: called with no
    arguments once per page, serving only C{/}, with no alerts, no
    backplane, no metrics of its own, no room limits.  An application that
    serves several pages, or wants any of the rest, provides the interface.

Adapting anything else raises C{TypeError} with the reason, which the
plugin shows as its one-line usage error.
"""

import inspect
from types import MethodType
from typing import Any, Callable

from twisted.python.components import registerAdapter
from zope.interface import Attribute, Interface, implementer

from ._element import LiveElement

__all__ = ["ILiveApplication", "LiveApplication", "CallableApplication"]


class ILiveApplication(Interface):
    """
    An application the runtime serves: it makes each page's element, and
    says which paths are its pages.  The plugin (C{chatthing.tap}) offers it
    the rest at start-up: a backplane, room limits, a site's metrics; and
    sends operator alerts through its C{wall}.
    """

    wall = Attribute(
        """
        Where operator alerts go (the admin endpoint's C{POST /alert}, and
        the restart notice when the server stops): a callable taking the
        alert's text, showing it on every page and returning how many pages
        of this process it went to; or L{None} if this application has no
        alerts (then C{--admin-token-file} is refused at start-up).
        """
    )

    def makeElement(page: str) -> LiveElement:
        """
        The element for a new page at C{page} (the page's path, as its hello
        frame gives it; C{/} if it gives none).

        @raise chatthing.live.LiveError: a refusal the page is told (no such
            page, too many rooms...).
        """

    def pageExists(path: str) -> bool:
        """
        Whether the page shell is served at C{path} (else 404).
        """

    def registerMetrics(metrics: Any) -> None:
        """
        Add the application's own numbers to a site's L{LiveMetrics}
        (C{metrics.addGauge}); called once per site, when it is made.
        """

    def useBackplane(backplane: Any) -> bool:
        """
        Share state through C{backplane} (a C{chatthing.backplane.Backplane}:
        the in-memory one, or Redis with C{--redis}); called once at
        start-up, before any page comes.

        @return: whether the application uses it; one that keeps to its own
            process says L{False}, and C{--redis} is refused for it.
        """

    def setRoomLimits(maxRooms: int, roomBytes: int, totalBytes: int,
                      presenceListMax: int | None = None) -> None:
        """
        Apply C{--max-rooms}, C{--room-bytes} and C{--rooms-bytes} (and
        C{--presence-list-max}: past it a room lists a bounded window of
        names and a count; L{None}: the application's default); called
        once at start-up.  An application with no rooms ignores them.
        """


@implementer(ILiveApplication)
class LiveApplication:
    """
    An application that offers only what it overrides: subclass it and
    define L{makeElement}; by default only C{/} is a page, and there are no
    alerts, no backplane, no metrics of its own and no room limits.
    """

    wall: Callable[[str], Any] | None = None

    def makeElement(self, page: str) -> LiveElement:
        raise NotImplementedError(f"{type(self).__name__} must define makeElement(page)")

    def pageExists(self, path: str) -> bool:
        return path == "/"

    def registerMetrics(self, metrics: Any) -> None:
        pass

    def useBackplane(self, backplane: Any) -> bool:
        return False

    def setRoomLimits(self, maxRooms: int, roomBytes: int, totalBytes: int,
                      presenceListMax: int | None = None) -> None:
        pass


class CallableApplication(LiveApplication):
    """
    A plain element factory as an application: C{factory()}, with no
    arguments, makes each page's element; the rest is L{LiveApplication}'s
    (only C{/}, nothing else offered).

    @ivar factory: the callable, checked once, here, to be callable with no
        arguments.
    """

    def __init__(self, factory: Any) -> None:
        name = getattr(factory, "__qualname__", None) or repr(factory)
        if inspect.isclass(factory) and not issubclass(factory, LiveElement):
            raise TypeError(f"{name} is a class, but not a LiveElement")
        if not callable(factory):
            raise TypeError(f"{factory!r} is not callable")
        try:
            inspect.signature(factory).bind()
        except TypeError:
            raise TypeError(
                f"{name} must be callable with no arguments (an application that "
                "makes elements for several pages provides ILiveApplication)"
            ) from None
        except ValueError:
            pass  # no signature to read (some builtins): trust it
        self.factory = factory

    def __repr__(self) -> str:
        return f"<CallableApplication {self.factory!r}>"

    def makeElement(self, page: str) -> LiveElement:
        return self.factory()


def _applicationOfMethod(method: MethodType) -> ILiveApplication:
    """
    The application a bound method stands for: the object it is bound to,
    if that object provides L{ILiveApplication} and the method is its
    C{makeElement}; else the method as a plain factory.

    @raise TypeError: for another method of an application (its C{wall}...),
        which is no element factory.
    """
    owner = method.__self__
    if not ILiveApplication.providedBy(owner):
        return CallableApplication(method)
    if owner.makeElement != method:
        raise TypeError(f"{method.__qualname__} is a method of the application {owner!r}, "
                        "but not its makeElement")
    return owner


# Bound methods first (more specific), then every other object: what is not
# callable, or needs arguments, is refused by CallableApplication itself.
registerAdapter(_applicationOfMethod, MethodType, ILiveApplication)
registerAdapter(CallableApplication, object, ILiveApplication)
