"""
The join storm: N pages connect and log in at once to one room, as when a
popular room opens or a server restarts.

What it costs grows with how each login is announced: if every login is
sent to every page of the room (its C{presenceJoined}, the join alert, the
C{messageTime}), N logins cost N² frames, and the server is saturated for
as long as it takes to send them.  So the storm is over not when the last
C{setUsername} is answered, but when every page's presence view holds
every name (L{chatthing.bench.rawclient.Presence}), counted from the
frames the page received: C{updatePresence} when it opens, then
C{presenceJoined} and C{presenceLeft}, or C{presenceChanged(joined,
left)} where the server sends a room's changes together.  Servers that
keep no presence (the baseline, the Node peer) are in when their logins
are answered: their figures are what a login costs with no announcing.

Its figures: the time until all are in, the server's CPU per page over
the whole storm (until the server goes quiet), the frames and bytes each
page received, the server's memory for each, and what was lost (pages
that could not log in, were cut, or never saw everyone).

Past 28,000 pages the ephemeral ports between one pair of addresses run
out, so the pages' connections come from several loopback addresses in
turn (127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 is this machine).
"""

import time

from .crowd import Crowd, PagePlan, Target, openCrowd
from .meter import Meter, residentBytes
from .progress import ProgressBar
from .presence import Presence
from .rawclient import RawPage
from .traffic import Stall, pause, settle

#: Pages connecting from each loopback source address.
PAGES_PER_SOURCE = 10000

#: The longest wait for every page to see everyone, after the logins.
PRESENCE_DEADLINE = 600.0

#: How often the load generator looks at the count while it waits.
POLL_SECONDS = 0.05


def sourceAddress(index: int, perSource: int = PAGES_PER_SOURCE) -> str:
    """
    The loopback address page C{index} connects from: 127.0.0.2 for the
    first C{perSource} pages, 127.0.0.3 for the next, and so on.
    """
    number = 2 + index // max(1, perSource)
    if number > 254 * 255:
        raise ValueError(f"page {index}: too many pages for 127.0.0.0/8 at {perSource} an address")
    return f"127.0.{number // 255}.{number % 255}" if number > 254 else f"127.0.0.{number}"


def stormPlans(targets: list[Target], count: int, room: str, prefix: str,
               presence: Presence | None, perSource: int = PAGES_PER_SOURCE,
               probes: int = 0, senders: int = 0) -> list[PagePlan]:
    """
    C{count} pages, all logged in to C{room}, spread over C{targets}: the
    first C{probes} time the room's messages, the last C{senders} say them
    (both read by the reactor); the others are read in bulk.
    """
    return [PagePlan(targets[index % len(targets)], room, f"{prefix}j{index}",
                     probe=index < probes, bulk=probes <= index < count - senders,
                     source=sourceAddress(index, perSource), presence=presence)
            for index in range(count)]


async def waitForEveryone(reactor, crowd: Crowd, presence: Presence) -> bool:
    """
    Wait until every open page sees every name, or the server has sent
    nothing for a while (L{Stall}), or L{PRESENCE_DEADLINE} passed: whether
    all did.
    """
    progress = ProgressBar("join storm: seeing everyone", len(crowd.pages))
    deadline = time.monotonic() + PRESENCE_DEADLINE
    stall = Stall(crowd)
    while presence.complete < len(crowd.pages) and time.monotonic() < deadline:
        await pause(reactor, POLL_SECONDS)
        progress.update(presence.complete)
        if stall.stalled():
            break
    progress.update(presence.complete)
    progress.finish()
    return presence.complete == len(crowd.pages)


async def joinStorm(reactor, targets: list[Target], count: int, concurrency: int, prefix: str,
                    serverPids: list[int], helperPids: list[int], followPresence: bool = True,
                    perSource: int = PAGES_PER_SOURCE, probes: int = 0,
                    senders: int = 0) -> tuple[dict, Crowd]:
    """
    Open C{count} pages at once (C{concurrency} connecting at a time) in
    one room, and wait until all are in and the server is quiet: the
    storm's figures, and its crowd, still open.
    """
    presence = Presence(count) if followPresence else None
    plans = stormPlans(targets, count, f"/room/{prefix}-storm", prefix, presence, perSource,
                       probes, senders)
    before = residentBytes(serverPids)
    meter = Meter(serverPids, helperPids)
    started = time.monotonic()
    crowd = await openCrowd(reactor, plans, concurrency, "join storm: logging in")
    if presence is not None:
        # Fewer pages are in than planned if some failed: each sees those.
        presence.expected = len(crowd.pages)
        presence.complete = sum(1 for page in crowd.pages if page.present == len(crowd.pages))
        everyone = await waitForEveryone(reactor, crowd, presence)
        allIn = max(crowd.seconds, presence.lastCompleted - started) if everyone else None
    else:
        everyone, allIn = True, crowd.seconds
    settled = await settle(reactor, crowd, "join storm: settling")
    window = meter.stop()
    after = residentBytes(serverPids)
    return stormFigures(crowd, presence, window, before, after, allIn, settled), crowd


def stormFigures(crowd: Crowd, presence: Presence | None, window: dict, before: int | None,
                 after: int | None, allIn: float | None, settled: dict) -> dict:
    """
    What the storm cost, from its crowd and its measuring window.
    """
    pages: list[RawPage] = crowd.pages
    opened = len(pages)
    frames = [page.frames for page in pages]
    sawEveryone = presence.complete if presence is not None else None
    missing = opened - sawEveryone if sawEveryone is not None else 0
    cpu = window["serverCpuSeconds"]
    return {
        "pages": opened + crowd.failed,
        "connected": opened,
        "failed": crowd.failed,
        "failedReasons": crowd.reasons,
        "loginSeconds": crowd.seconds,
        "allInSeconds": allIn,
        "followsPresence": presence is not None,
        "sawEveryone": sawEveryone,
        "missedSomeone": missing,
        "droppedConnections": crowd.dropped(),
        "pagesLost": crowd.failed + missing + crowd.dropped(),
        "settleSeconds": settled["seconds"],
        "stillSending": settled["stillSending"],
        "frames": sum(frames),
        "framesPerPage": sum(frames) / opened if opened else None,
        "maxFramesPerPage": max(frames, default=0),
        "bytesPerPage": crowd.received() / opened if opened else None,
        "serverCpuMicrosPerConnect": cpu * 1e6 / opened if cpu is not None and opened else None,
        "sourceAddresses": sorted({page.source for page in pages}),
        "rssBeforeBytes": before,
        "rssAfterBytes": after,
        "bytesPerConnection": ((after - before) / opened
                               if before is not None and after is not None and opened else None),
        **window,
    }
