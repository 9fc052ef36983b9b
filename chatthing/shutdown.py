"""
L{GracefulShutdown}: when twistd stops (SIGTERM, SIGINT), tell every page
the server is restarting, and close every WebSocket with 1001 "going away"
so that pages reconnect, instead of having their TCP connections cut.
"""

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

#: The global alert every page gets when the server stops.
RESTART_ALERT = "The server is restarting. You will be reconnected."


class GracefulShutdown(Service):
    """
    Does nothing while running; when stopped, sends C{message} through
    C{alert} (the application's C{ILiveApplication.wall}, if it has one),
    then closes every connection of C{site} with "going away".  Its C{stopService}
    fires once they have closed (or after the site's timeout), so twistd
    waits for it before the reactor stops.

    Add it to a L{MultiService} after the services that listen for C{site}:
    a C{MultiService} stops its children last-added first, so this runs
    while the connections are open, before the listening ports close.
    """

    log = Logger()

    def __init__(
        self, site: Any, alert: Callable[[str], Any] | None = None, message: str = RESTART_ALERT,
    ) -> None:
        self.site = site
        self.alert = alert
        self.message = message

    def stopService(self) -> Deferred:
        super().stopService()
        count = len(self.site.liveFactory.connections)
        alerted = False
        if self.alert is not None and count:
            try:
                self.alert(self.message)
                alerted = True
            except Exception:
                self.log.failure("the shutdown alert could not be sent")
        self.log.info(
            "shutting down: {alerted}closing {count} WebSocket connection(s) with 1001 going away",
            alerted="sent the restart alert; " if alerted else "", count=count,
        )
        return self.site.shutDown()
