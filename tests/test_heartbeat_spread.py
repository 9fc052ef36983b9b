"""
Heartbeats spread over the ping interval (issue 14): pages that open
together must not all be pinged, and answer, in the same few ticks.

Pages connect from plain sockets (the bench's L{RawPage}) to a real server
on an ephemeral loopback port; each notes when its WebSocket opened and
when the server's first ping came.  Only where each ping falls within the
interval is asserted, as a fraction of it, never how long anything took.
"""

import pytest_twisted
from conftest import eventually
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock

from chatthing.bench.rawclient import RawPage
from chatthing.live import LiveSettings
from chatthing.live._protocol import firstPingDelay
from chatthing.live._timerwheel import TimerWheel

#: Pages that open at once.
PAGES = 40

#: The server's ping interval in these tests, in seconds: long beside the
#: few milliseconds a page takes to open, short enough for a quick test.
INTERVAL = 2.0


class PingedPage(RawPage):
    """
    A page that notes, on the reactor's clock, when its WebSocket opened
    and when the server first pinged it.
    """

    opened: float | None = None
    firstPing: float | None = None

    def _upgrade(self) -> bool:
        upgraded = super()._upgrade()
        if upgraded and self.opened is None:
            self.opened = reactor.seconds()
        return upgraded

    def _controlReceived(self, first: int, payload: bytes) -> None:
        if first & 0x0F == 0x9 and self.firstPing is None:
            self.firstPing = reactor.seconds()
        super()._controlReceived(first, payload)


@pytest_twisted.ensureDeferred
async def test_pagesOpenedTogetherArePingedAcrossTheInterval(serve):
    """40 pages opened at once: their first pings fall from half the interval to all of it after each opened, not all at its end."""
    server = await serve(LiveSettings(pingInterval=INTERVAL, pingTimeout=10.0))
    pages = [PingedPage("127.0.0.1", server.port) for _ in range(PAGES)]
    for page in pages:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), page)
    try:
        await eventually(lambda: all(page.firstPing is not None for page in pages),
                         "every page's first ping", deadline=3 * INTERVAL + 10)
        fractions = sorted((page.firstPing - page.opened) / INTERVAL for page in pages)
        early = sum(1 for fraction in fractions if fraction < 0.8)
        print(f"\nfirst ping, as a fraction of the interval after opening: "
              f"{fractions[0]:.2f} .. {fractions[-1]:.2f}; {early} of {PAGES} before 0.8")
        # None before half the interval (the page notes its opening a little
        # after the server does, hence the margin)...
        assert fractions[0] > 0.4, fractions
        # ...and spread from there: with a draw from [0.5, 1] about 60 % come
        # before 0.8 of it; when every page was pinged one whole interval
        # after it opened, none did.
        assert early >= PAGES // 4, fractions
        # Every page is still pinged about one interval after it opened at
        # the latest (a loaded machine may be a little late).
        assert fractions[-1] < 1.5, fractions
    finally:
        for page in pages:
            page.close()


def test_firstPingDelayIsFromHalfTheIntervalToAllOfIt():
    """The first ping is drawn from [interval / 2, interval]."""
    assert firstPingDelay(10.0, lambda: 0.0) == 5.0
    assert firstPingDelay(10.0, lambda: 1.0) == 10.0
    assert firstPingDelay(10.0, lambda: 0.5) == 7.5


def test_aTimerMovedInTheTurnItWasMadeLeavesNothingInItsTick():
    """A timer moved right after it was made fires at its new time only, and its old tick holds nothing."""
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[str] = []
    timer = wheel.call_later(10.0, fired.append, "moved")
    moved = wheel.move(timer, 3.0)
    assert not timer.active() and moved.active()
    assert len(wheel) == 1 and wheel.calls() == 1  # the tick at 10 s is gone
    clock.advance(3.0)
    assert fired == ["moved"]
    clock.advance(10.0)
    assert fired == ["moved"]
    assert wheel.move(moved, 1.0) is moved  # fired: nothing to move
