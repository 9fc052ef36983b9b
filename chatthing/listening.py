"""
L{ListeningService}: listen on an endpoint description and say where.
"""

from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.logger import Logger


class ListeningService(Service):
    """
    Listens with C{factory} on the endpoint C{description} while running, and
    logs the address it got, so that a port of C{0} can be found in the log
    (C{"chat listening on http://127.0.0.1:41234/"}).
    """

    log = Logger()

    def __init__(self, description: str, factory: Any, label: str, reactor: Any = None) -> None:
        self.description = description
        self.factory = factory
        self.label = label
        self.reactor = reactor
        self.port: Any = None
        self._listening: Deferred | None = None

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor
            self.reactor = reactor
        endpoint = endpoints.serverFromString(self.reactor, self.description)
        self._listening = endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: Any) -> Any:
        self.port = port
        address = port.getHost()
        scheme = "https" if self.description.startswith("ssl:") else "http"
        self.log.info(
            "{label} listening on {scheme}://{host}:{port}/",
            label=self.label, scheme=scheme, host=address.host, port=address.port,
        )
        return port

    def _failed(self, failure: Any) -> None:
        self.log.failure("{label} cannot listen on {description}", failure,
                         label=self.label, description=self.description)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None
