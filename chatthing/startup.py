"""
Start-up that fails loudly: a mistake in where to listen is said in one line
and the process exits non-zero at once, instead of a Python traceback or a
server that keeps running while listening on nothing.

Two checks, at the two moments a mistake can be found:

- L{checkEndpoint}, while the options are parsed: the description must be
  one Twisted can build an endpoint from, and for C{ssl:} its key and
  certificate files must exist and load (C{usage.UsageError}, which twistd
  prints as one line and exits 1);
- L{StartupService}, when twistd starts the service: a listener refused
  then (the port is in use, the address is not this machine's) ends the
  process with one log line and exit status 1.

L{StartupService} also orders the stop: what the L{GracefulShutdown} holds
(the backplane) stops only once its drain is done, so that the pages still
connected during the drain keep talking through Redis.
"""

import gc
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from .listening import CannotListen, oneLine
from .logs import useSecondTimes
from .shutdown import GracefulShutdown

#: What an C{ssl:} description needs, said when it fails.
SSL_HINT = ("an ssl: endpoint needs privateKey=KEY.pem:certKey=CERT.pem, both readable PEM files "
            "(certKey may be left out only if KEY.pem holds the certificate too)")


class _NoReactor:
    """
    Stands in for the reactor while a description is only parsed: building
    an endpoint does not use it, and the real one is not installed by
    checking options.
    """


def checkEndpoint(option: str, description: str) -> str:
    """
    C{description}, if an endpoint can be built from it, as the server will
    when it starts: the type is known, its arguments parse, and the files it
    names (an C{ssl:} key and certificate) exist and load.

    @param option: the option that gave it (C{"--listen"}), for the message.
    @raise usage.UsageError: saying in one line what is wrong.
    """
    try:
        endpoints.serverFromString(_NoReactor(), description)
    except Exception as e:
        reason = oneLine(f"{type(e).__name__}: {e}")
        if description.strip().lower().startswith("ssl:"):
            reason += f"; {SSL_HINT}"
        raise usage.UsageError(f"{option} {description!r} cannot be used: {reason}") from None
    return description


class StartupService(MultiService):
    """
    The plugin's top service: a L{MultiService} whose start ends the process
    in one line if one of its listeners cannot listen.

    twistd would print the L{CannotListen} raised from starting as a
    traceback (and, before listeners raised it, went on running with nothing
    listening).  This logs its one line at C{critical}, and lets it go on up
    to twistd with Python told not to print its traceback: twistd then
    removes its PID file, and in a daemon passes the line to the parent
    process, which prints it; the process exits with status 1.  (Exiting
    with C{SystemExit} instead would leave a daemon's parent waiting
    forever for word from its child.)
    """

    log = Logger()

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListen as e:
            self._exit(e)

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListen as e:
            self._exit(e)
        freezeStartup()
        collectYoungLessOften()
        useSecondTimes()

    def stopService(self) -> Deferred:
        """
        Stop the children last-added first, all at once, as a
        L{MultiService} does; but those a L{GracefulShutdown} holds (the
        backplane) only once its drain has finished: a page not yet closed
        may still be saying something, which must reach the other
        processes, not this one alone.  The listeners stop at once, so that
        the pages moving away do not come back here.
        """
        Service.stopService(self)
        children = list(self)
        held = [child for child in children
                if any(child in drain.holds for drain in children if isinstance(drain, GracefulShutdown))]
        first = DeferredList([maybeDeferred(child.stopService)
                              for child in reversed(children) if child not in held])

        def stopTheHeld(_: Any) -> Deferred:
            return DeferredList([maybeDeferred(child.stopService) for child in reversed(held)])

        return first.addCallback(stopTheHeld)

    def _exit(self, error: CannotListen) -> Any:
        self.log.critical("{line}", line=str(error))
        quietAbout(CannotListen)
        raise error


def freezeStartup() -> None:
    """
    Leave what start-up made (modules, classes, functions, templates: some
    65,000 objects) out of the garbage collector's full collections, which
    otherwise walk them all each time, stopping the server meanwhile:
    measured with 2,000 idle pages, a full collection took 52 ms of CPU,
    16 ms once they were frozen (issue 14: the latency's tail).  What is
    garbage by then is collected first; nothing frozen is ever collected,
    and start-up's objects live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


#: Net new container objects between two young collections (Python's
#: default: 700).
YOUNG_THRESHOLD = 10_000


def collectYoungLessOften() -> None:
    """
    Let the collector's youngest generation grow to L{YOUNG_THRESHOLD}
    objects before it is collected, not 700.  A login makes a few hundred
    objects that live as long as the page (its connection, session,
    element, buffers), so at 700 a storm of logins ran a young collection
    every few logins, each walking the objects made since, and promoted
    them into the middle generation to be walked again: measured on a
    2,000-page join storm (server pinned to a core, C{gc.callbacks}), 98
    to 107 young and 8 or 9 middle collections, 40 to 45 ms of CPU (some
    20 µs a connect), against 6 young and none in the middle, 15 ms, at
    10,000.  What it costs: garbage in reference cycles waits for up to
    10,000 more allocations before it is found, a bounded amount whatever
    the number of pages (some 1 MB: the bench's server memory a page over
    that storm read 2.8-3.1 KiB against 2.2-2.3, while the RSS after it
    read 90-91 MB against 93-96 MB: within the noise); full collections
    are as before.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def quietAbout(kind: type[BaseException]) -> None:
    """
    Keep Python from printing a traceback when an uncaught exception of
    C{kind} ends the process (its message was logged already); it still
    exits with status 1.  Other exceptions are printed as before.
    """
    previous = sys.excepthook

    def hook(type_: type[BaseException], value: BaseException, traceback: Any) -> None:
        if not issubclass(type_, kind):
            previous(type_, value, traceback)

    sys.excepthook = hook
