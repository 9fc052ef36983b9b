"""
L{ListeningService}: listen on an endpoint description and say where, or
say in one line why not.
"""

from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure


class CannotListen(Exception):
    """
    A L{ListeningService} could not listen where it was told to (the port is
    in use, the address is not this machine's, a certificate file cannot be
    read...).  Its text is one line saying what and where.
    """


def oneLine(text: str) -> str:
    """
    C{text} on one line (an OpenSSL error can span several).
    """
    return " ".join(str(text).split())


class ListeningService(Service):
    """
    Listens with C{factory} on the endpoint C{description} while running, and
    logs the address it got, so that a port of C{0} can be found in the log
    (C{"chat listening on http://127.0.0.1:41234/"}).

    It listens as soon as it can: in C{privilegedStartService} when twistd
    calls it (before dropping privileges, so that port 443 works with
    C{--uid}), else in C{startService}.  Listening on TCP, TLS or a UNIX
    socket is done or refused at once, and then a refusal is raised as
    L{CannotListen} from the call that started it, so that start-up stops
    there instead of going on with nothing listening.  A refusal that comes
    later (an endpoint that listens asynchronously) is logged in one line
    and stops the reactor.
    """

    log = Logger()

    def __init__(self, description: str, factory: Any, label: str, reactor: Any = None) -> None:
        self.description = description
        self.factory = factory
        self.label = label
        self.reactor = reactor
        self.port: Any = None
        self._listening: Deferred | None = None
        self._starting = False
        self._refused: Failure | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        """
        Start listening; raise L{CannotListen} if it is refused at once.
        """
        if self.reactor is None:
            from twisted.internet import reactor
            self.reactor = reactor
        try:
            endpoint = endpoints.serverFromString(self.reactor, self.description)
        except Exception as e:
            raise CannotListen(self._why(oneLine(f"{type(e).__name__}: {e}"))) from None
        self._starting = True
        try:
            self._listening = endpoint.listen(self.factory)
            self._listening.addCallbacks(self._listened, self._failed)
        finally:
            self._starting = False
        refused, self._refused = self._refused, None
        if refused is not None:
            self._listening = None
            raise CannotListen(self._why(oneLine(refused.getErrorMessage())))

    def _why(self, reason: str) -> str:
        return f"{self.label} cannot listen on {self.description}: {reason}"

    def _listened(self, port: Any) -> Any:
        self.port = port
        address = port.getHost()
        scheme = "https" if self.description.startswith("ssl:") else "http"
        self.log.info(
            "{label} listening on {scheme}://{host}:{port}/",
            label=self.label, scheme=scheme, host=address.host, port=address.port,
        )
        return port

    def _failed(self, failure: Failure) -> None:
        if self._starting:
            # Refused at once: _listen raises it to whoever started us.
            self._refused = failure
            return None
        self.log.critical("{line}", line=self._why(oneLine(failure.getErrorMessage())))
        if self.reactor.running:
            self.reactor.stop()
        return None

    def stopService(self) -> Deferred | None:
        super().stopService()
        port, self.port, self._listening = self.port, None, None
        if port is not None:
            return port.stopListening()
        return None
