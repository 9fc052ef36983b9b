"""
L{Crowd}: many L{RawPage}s opened and logged in at once, a bounded number
at a time, with a progress bar: how the load generator brings in a thousand
receivers or ten thousand idle pages without a storm of handshakes that
would measure the kernel's accept queue instead of the server.
"""

import socket
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    ensureDeferred,
)
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ClientFactory
from twisted.internet.tcp import Client, Connector
from twisted.python.failure import Failure

from . import bulkread
from .bulkread import BulkReader
from .progress import ProgressBar
from .presence import Presence
from .rawclient import RawPage

#: Seconds one page may take to connect, be welcomed and log in.
OPEN_DEADLINE = 120.0

#: How many failures' reasons are kept to be reported.
KEPT_REASONS = 5


@dataclass(frozen=True)
class Target:
    """
    Where pages connect: one server's WebSocket, from a C{ws://} URL.
    """

    host: str
    port: int
    path: str

    @classmethod
    def fromURL(cls, url: str) -> "Target":
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"expected a ws://HOST:PORT/PATH URL, not {url!r}")
        return cls(parts.hostname, parts.port or 80, parts.path or "/live")


@dataclass(frozen=True)
class PagePlan:
    """
    One page to open: on which server, in which room, under which name (or
    not logged in, if L{None}), whether it is a latency probe, and whether
    it only counts what it hears, so that its socket may be read in bulk
    (L{chatthing.bench.bulkread}); the loopback address its connection
    comes from (L{None}: the kernel's choice), so that more pages than one
    address has ephemeral ports can connect; and the crowd's L{Presence}
    count, if it follows the room's presence frames.
    """

    target: Target
    page: str
    username: str | None
    probe: bool = False
    bulk: bool = False
    source: str | None = None
    presence: Presence | None = field(default=None, compare=False)


@dataclass
class Crowd:
    """
    Pages opened from their plans, in plan order, and those that failed.

    @ivar seconds: wall time from the first connection to the last login.
    @ivar slots: the page opened for each plan, in plan order, or L{None}
        where it failed.
    @ivar reader: what reads the pages' sockets, if not the reactor.
    @ivar login: how their logins went (L{summary}, and how long the
        server went on announcing them), once the room has settled.
    """

    pages: list[RawPage] = field(default_factory=list)
    slots: list[RawPage | None] = field(default_factory=list)
    reader: BulkReader | None = None
    #: What reads the probes' sockets, each read stamped with the time its
    #: bytes arrived, if not the reactor.
    probeReader: BulkReader | None = None
    failed: int = 0
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    login: dict = field(default_factory=dict)

    def deliveries(self) -> int:
        return sum(page.deliveries for page in self.pages)

    def frames(self) -> int:
        return sum(page.frames for page in self.pages)

    def received(self) -> int:
        return sum(page.received for page in self.pages)

    def resetDeliveries(self) -> None:
        for page in self.pages:
            page.deliveries = 0

    def dropped(self) -> int:
        """
        Pages whose connection was lost although nobody closed it: the
        server cut them (a slow reader, too many unacknowledged frames).
        """
        return sum(1 for page in self.pages if not page.isOpen)

    def summary(self) -> dict:
        return {"opened": len(self.pages), "failed": self.failed, "seconds": self.seconds,
                "reasons": self.reasons}

    async def close(self, reactor, deadline: float = 5.0) -> None:
        """
        Leave with every page (close code 1000: the server ends their
        sessions at once rather than keeping them for the grace period),
        and wait a little for the connections to go.
        """
        for reader in (self.reader, self.probeReader):
            if reader is not None:
                reader.close()
        self.reader = self.probeReader = None
        waiting = [page.closed for page in self.pages if page.isOpen]
        for page in self.pages:
            page.close()
        if waiting:
            everything = DeferredList(waiting)
            everything.addTimeout(deadline, reactor)
            try:
                await everything
            except Exception:
                pass


#: Linux's C{IP_BIND_ADDRESS_NO_PORT}: bind a socket to an address but
#: leave its port to C{connect()}.
IP_BIND_ADDRESS_NO_PORT = 24


class SourceClient(Client):
    """
    A TCP client bound to its source address only: C{bind((address, 0))}
    alone takes a port of that address for itself, whatever the
    destination, and so does each connection in TIME_WAIT for a minute, so
    that after one storm of 20,000 the next finds the ports taken and
    crawls; with the port left to C{connect()}, a port is taken only for
    its destination.
    """

    def createInternetSocket(self) -> socket.socket:
        sock = super().createInternetSocket()
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        return sock


class SourceConnector(Connector):
    """
    A connector that makes L{SourceClient}s.
    """

    def _makeTransport(self) -> Client:
        return SourceClient(self.host, self.port, self.bindAddress, self, self.reactor)


class OnePageFactory(ClientFactory):
    """
    Connects one page: C{connected} fires once the page has its transport.
    """

    def __init__(self, reactor, page: RawPage) -> None:
        self.reactor = reactor
        self.page = page
        self.connected: Deferred = Deferred()

    def buildProtocol(self, addr: object) -> RawPage:
        # Fired on the next turn: the page is given its transport first.
        self.reactor.callLater(0, self.connected.callback, None)
        return self.page

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.connected.errback(reason)


def connectFrom(reactor, source: str, target: Target, page: RawPage) -> Deferred:
    """
    Connect C{page} to C{target} from the loopback address C{source}.
    """
    factory = OnePageFactory(reactor, page)
    SourceConnector(target.host, target.port, factory, 30, (source, 0), reactor).connect()
    return factory.connected


async def openPage(reactor, plan: PagePlan, reader: BulkReader | None = None) -> RawPage:
    """
    Connect, be welcomed and log in as C{plan} says; C{reader}, if given,
    reads the page's socket from the start.
    """
    page = RawPage(plan.target.host, plan.target.port, plan.target.path, plan.page,
                   probe=plan.probe)
    page.presence = plan.presence
    if plan.source is None:
        endpoint = TCP4ClientEndpoint(reactor, plan.target.host, plan.target.port, timeout=30)
        await connectProtocol(endpoint, page)
    else:
        await connectFrom(reactor, plan.source, plan.target, page)
    if reader is not None:
        reader.take(page)
    try:
        await page.welcomed
        if plan.username is not None:
            await page.call("setUsername", plan.username)
    except BaseException:
        page.transport.abortConnection()
        raise
    return page


async def openCrowd(reactor, plans: list[PagePlan], concurrency: int, label: str) -> Crowd:
    """
    Open a page for each of C{plans}, C{concurrency} at most at a time, and
    say how far it has got on a progress bar; pages that fail are counted,
    not retried.  The sockets of the pages planned so are read in bulk.
    """
    crowd = Crowd()
    if bulkread.available() and any(plan.bulk for plan in plans):
        crowd.reader = BulkReader(reactor)
    if bulkread.available() and any(plan.probe and not plan.bulk for plan in plans):
        crowd.probeReader = BulkReader(reactor, stamped=True)
    opened: list[RawPage | None] = [None] * len(plans)
    progress = ProgressBar(label, len(plans))
    limit = DeferredSemaphore(concurrency)
    started = time.monotonic()

    async def one(index: int, plan: PagePlan) -> None:
        try:
            reader = crowd.reader if plan.bulk else crowd.probeReader if plan.probe else None
            d = ensureDeferred(openPage(reactor, plan, reader))
            d.addTimeout(OPEN_DEADLINE, reactor)
            opened[index] = await d
        except Exception as e:
            crowd.failed += 1
            if len(crowd.reasons) < KEPT_REASONS:
                crowd.reasons.append(f"{type(e).__name__}: {e}")
        progress.advance()

    def start(index: int, plan: PagePlan) -> Deferred:
        return limit.run(lambda: ensureDeferred(one(index, plan)))

    await DeferredList([start(index, plan) for index, plan in enumerate(plans)])
    crowd.seconds = time.monotonic() - started
    crowd.slots = opened
    crowd.pages = [page for page in opened if page is not None]
    progress.finish(f"{crowd.failed} failed" if crowd.failed else "")
    return crowd
