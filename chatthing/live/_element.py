"""
L{LiveElement}: the server-side half of one browser page.
"""

from typing import Any, ClassVar

from jinja2 import Environment
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._apps import appURL, templatesFor
from ._errors import ElementDetached


class LiveElement:
    """
    One server-side object per browser page, made by the application's
    element factory when the page connects.

    The page's widget calls this element's L{expose}d methods; this element
    calls the widget's methods with L{callRemote}.  Subclasses need not call
    C{LiveElement.__init__}: the runtime keeps its state out of the way of
    the application's.

    @cvar template: Jinja2 template that draws the element's part of the
        page, looked up first in the C{templates/} folder beside the module
        defining the class, then in the runtime's own; L{None} for a page with
        no markup.
    @cvar jsModule: the ES module that defines the widget class: a bare
        C{"x.js"} is the file C{js/x.js} beside the module defining the class
        (served at C{/apps/<module>/js/x.js}); one with a leading C{/} is a
        URL of the site (C{"/js/ChatThing.js"}, the built-in apps').  See
        L{chatthing.live._apps}.
    @cvar jsClass: name of the widget class that module exports.
    """

    template: ClassVar[str | None] = None
    jsModule: ClassVar[str | None] = None
    jsClass: ClassVar[str | None] = None

    _liveSession: Any = None
    #: The id of the page's session, once attached (kept after it ends).
    sessionId: str | None = None
    _liveDetachReason: Failure | None = None
    _liveDisconnectWaiters: list[Deferred] | None = None

    _liveLog = Logger()

    def render(self, environment: Environment) -> str | None:
        """
        The HTML that the page shows for this element, sent once when it
        connects.  Jinja2 autoescapes everything; the template sees the
        element as C{element} and the URL prefix of its app's own files
        (C{/apps/<module>}) as C{app}.

        @param environment: the runtime's templates, searched after the
            element's own folder's.
        """
        if self.template is None:
            return None
        cls = type(self)
        return templatesFor(cls, environment).get_template(self.template).render(
            element=self, app=appURL(cls))

    def callRemote(self, methodName: str, *args: Any) -> Deferred:
        """
        Call C{methodName} on the page's widget.

        @return: a L{Deferred} firing with the JavaScript method's return
            value, or failing with L{RemoteError} if it threw, or with
            L{ElementDetached} if the page is gone (at once if it already is).
        """
        if self._liveSession is None:
            reason = (
                "the page has gone away"
                if self._liveDetachReason is not None
                else "the element is not attached to a page"
            )
            return fail(ElementDetached(f"cannot call {methodName}(): {reason}"))
        return self._liveSession.callRemote(methodName, args)

    def notifyRemote(self, methodName: str, *args: Any) -> None:
        """
        Call C{methodName} on this page's widget, wanting no answer (what is
        for this page only: a greeting, the answer to a command).  It
        reaches the page once, in order with everything else sent to it,
        even across a reconnection; nothing is sent if the page is gone.
        """
        if self._liveSession is not None:
            self._liveSession.notify(methodName, args)

    def notifyRemoteEncoded(self, methodName: str, argsJSON: bytes) -> None:
        """
        L{notifyRemote}, with the arguments' list encoded already (by
        L{chatthing.live.encodeArgs}): what many pages are sent alike, such
        as a room's presence list, is encoded once, not once per page.
        """
        if self._liveSession is not None:
            self._liveSession.notifyEncoded(methodName, argsJSON)

    def subscribe(self, stream: Any) -> None:
        """
        Have the page receive every call that C{stream} (a L{Stream}) emits,
        from now until it goes away.
        """
        if self._liveSession is None:
            raise ElementDetached("the element is not attached to a page")
        self._liveSession.subscribe(stream)

    def connected(self) -> None:
        """
        Called once the page is attached and calls may flow both ways.
        """

    def sessionState(self) -> Any:
        """
        What another process needs, besides the page's path, to carry on
        this element's session if this process dies or the page's next
        connection reaches another one: JSON data given to that process's
        new element's L{restore}.  L{None} (the default): the session cannot
        move, and a page that comes back elsewhere starts a new one.
        Call L{sessionStateChanged} when it changes.
        """
        return None

    def sessionStateChanged(self) -> None:
        """
        Record the element's new L{sessionState} for other processes.
        """
        if self._liveSession is not None:
            self._liveSession.stateChanged()

    def restore(self, state: Any) -> None:
        """
        Called instead of L{connected} on an element made to carry on a
        session from another process, with the L{sessionState} it recorded:
        take it up, and subscribe to the same streams (the page is then sent
        what it missed of them).
        """

    def goingAway(self) -> None:
        """
        Called when this process is stopping, just before the page's
        connection is closed with 1012 (the page reconnects, maybe to
        another process, and resumes its session): tell the page, if it
        should know, with L{notifyRemote}.  Only the pages of the stopping
        process are asked, each just before its own close.
        """

    def disconnected(self, reason: Failure) -> None:
        """
        Called once when the page goes away; the element is detached by then.
        """

    def notifyOnDisconnect(self) -> Deferred:
        """
        A L{Deferred} that fires, with the exception saying why, when the page
        goes away (at once, if it already has).  It never fails, so a caller
        that only wants to clean up needs no errback.
        """
        d: Deferred = Deferred()
        if self._liveDetachReason is not None:
            d.callback(self._liveDetachReason.value)
        else:
            if self._liveDisconnectWaiters is None:
                self._liveDisconnectWaiters = []
            self._liveDisconnectWaiters.append(d)
        return d

    # Called by the runtime.

    def _liveAttach(self, session: Any) -> None:
        self._liveSession = session
        self.sessionId = session.ident
        self._liveRunHook(self.connected)

    def _liveRestore(self, session: Any, state: Any) -> None:
        self._liveSession = session
        self.sessionId = session.ident
        self._liveRunHook(self.restore, state)

    def _liveDetach(self, reason: Failure) -> None:
        if self._liveDetachReason is not None:
            return
        self._liveSession = None
        self._liveDetachReason = reason
        self._liveRunHook(self.disconnected, reason)
        waiters, self._liveDisconnectWaiters = self._liveDisconnectWaiters or [], None
        for d in waiters:
            d.callback(reason.value)

    def _liveRunHook(self, hook: Any, *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self._liveLog.failure("{hook} of {element} raised", hook=hook.__name__,
                                  element=self)
