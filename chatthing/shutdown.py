"""
L{GracefulShutdown}: when twistd stops (SIGTERM, SIGINT), drain: tell each
of this process's pages the server is restarting (their elements'
C{goingAway}), and close its WebSocket with 1012 "service restart", the
closes spread over a short window, so that the pages reconnect (to another
process, or this one's successor) and resume, instead of having their TCP
connections cut, or all knocking at once.  With C{--state-file}, the
sessions and the application's state are then saved for the successor.
"""

from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .live import StateKeeper

#: Seconds over which the closes are spread by default (C{--drain-seconds}).
DRAIN_SECONDS = 2.0


class GracefulShutdown(Service):
    """
    Does nothing while running; when stopped, drains C{site}: each page is
    told by its own element (not through an alert every process's pages
    get), then its connection is closed with 1012, the closes spread
    evenly over C{drainSeconds}.  Its C{stopService} fires once they have
    closed (or after the site's timeout), so twistd waits for it before
    the reactor stops.

    C{holds}: sibling services (the backplane) that the pages still being
    drained need; L{chatthing.startup.StartupService} stops them only once
    the drain is done.

    Add it to a L{MultiService} after the services that listen for C{site}:
    a C{MultiService} stops its children last-added first, so this runs
    while the connections are open, before the listening ports close.
    """

    log = Logger()

    def __init__(self, site: Any, drainSeconds: float = DRAIN_SECONDS, holds: Sequence[Any] = (),
                 stateKeeper: StateKeeper | None = None) -> None:
        self.site = site
        #: Saves the sessions and the application's state once the drain
        #: is done (C{--state-file}), for the next process to resume.
        self.stateKeeper = stateKeeper
        self.drainSeconds = drainSeconds
        #: Sibling services (the backplane) that must stop only once the
        #: drain is done: the plugin's top service (L{StartupService}) waits.
        self.holds = tuple(holds)

    def stopService(self) -> Deferred:
        super().stopService()
        count = len(self.site.liveFactory.connections)
        self.log.info(
            "shutting down: telling {count} page(s) and closing their WebSocket connections "
            "with 1012 service restart over {seconds:g}s",
            count=count, seconds=self.drainSeconds if count > 1 else 0,
        )
        drained = self.site.shutDown(spread=self.drainSeconds)
        if self.stateKeeper is not None:
            # After the pages were told and closed (what they were sent is
            # theirs, and saved), before the process exits.
            drained.addCallback(lambda _: self.stateKeeper.save())
        return drained
