"""
A big room's presence (issue 14): past C{--presence-list-max} names a page
is sent the room's count and a window of its first names by join order, the
same on every page, so that what a page receives stays bounded whatever the
room's size; with real servers and real WebSocket clients, on the memory
backplane and on Redis.  Bytes and frames are counted, never time; the
room's presence timer runs on a L{Clock} the test moves (mocks only for
time).
"""

import json
import math

import cluster as harness
import pytest_twisted
from cluster import wsUrl
from conftest import eventually, presenceOf, withDeadline
from oneport import chatClient, onePort  # noqa: F401 (a fixture)
from test_presence_batch import connectAll, logIn, roomFrames, wavesWithADrop
from test_redis_backplane import Holder, Page, backplanes, openStream, startBackplane  # noqa: F401
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import Clock

from chatthing.backplane import MemoryBackplane, Presence
from chatthing.chat import Room
from chatthing.chat.presence import PRESENCE_INTERVAL
from chatthing.client import pagePath
from chatthing.live.testing import LiveTestClient

#: The window's size in these tests (C{--presence-list-max}).
LIST_MAX = 20

#: Pages that connect at once (an in-process crowd larger than this makes
#: its own handshakes time out on a loaded machine).
CONNECT_AT_ONCE = 150

#: Logins come in this many waves, one batch each, whatever the room's size.
WAVES = 3

#: The harness's fixtures (tests/cluster.py), for the Redis test.
cluster = harness.cluster
redisServer = harness.redisServer


def countOf(page: LiveTestClient) -> int | None:
    """
    How many the page shows in the room, as C{js/ChatThing.js} keeps it: the
    count a big room's frames carry (their last argument), else the length
    of its list.
    """
    count = None
    for frame in page.frames:
        args = frame.get("args")
        if frame.get("method") == "updatePresence":
            count = args[1] if len(args) == 2 else len(args[0])
        elif frame.get("method") == "presenceChanged":
            count = args[2] if len(args) == 3 else len(presenceOf(page) or [])
    return count


def bytesOf(page: LiveTestClient) -> int:
    """
    The bytes of every frame C{page} was sent, as the server encodes them.
    """
    return sum(len(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode())
               for frame in page.frames)


async def storm(serve, size: int) -> tuple[Room, list[LiveTestClient], list[str]]:
    """
    C{size} pages of one room (window L{LIST_MAX}) log in, in L{WAVES} waves
    of a batch each; returns once every page shows the whole count.
    """
    clock = Clock()
    room = Room(reactor=clock, presenceListMax=LIST_MAX)
    server = await serve(elementFactory=room.makeChatter)
    pages = []
    for start in range(0, size, CONNECT_AT_ONCE):
        pages += await connectAll(server, min(CONNECT_AT_ONCE, size - start))
    names = [f"user{i:04}" for i in range(size)]
    wave = math.ceil(size / WAVES)
    for start in range(0, size, wave):
        await logIn(pages[start:start + wave], names[start:start + wave])
        clock.advance(PRESENCE_INTERVAL)
    await eventually(lambda: all(countOf(p) == size for p in pages), "every page to count everyone",
                     deadline=30)
    return room, pages, names


@pytest_twisted.ensureDeferred
async def test_aPageOfABigRoomReceivesBoundedBytes(serve):
    """300 and 1,500 pages log in to a room whose window is 20 names: a page of the big room is sent
    about the bytes a page of the smaller one is (a constant, not O(N)), and every page shows the
    same window, the first 20 by join order, with the room's whole count."""
    sizes, perPage = (300, 1500), {}
    for size in sizes:
        room, pages, names = await storm(serve, size)
        windows = {tuple(presenceOf(p) or []) for p in pages}
        assert len(windows) == 1, windows
        [window] = windows
        # The first wave's (its first login went at once, the rest in its batch).
        assert len(window) == LIST_MAX and set(window) <= set(names[:math.ceil(size / WAVES)])
        assert room.presence() == list(window) and room.presenceCount() == size
        # welcome, list, login answer and its ack, a few batches (a time, a line, the change)
        perPage[size] = (max(bytesOf(p) for p in pages), max(len(p.frames) for p in pages))
        for page in pages:
            page.close()
    (small, smallFrames), (big, bigFrames) = perPage[sizes[0]], perPage[sizes[1]]
    # Every name once would be > 9 bytes a name: 13.5 KB at 1,500.
    assert big < 1.1 * small and big < 2500 and bigFrames <= smallFrames + 2 <= 18, perPage


@pytest_twisted.ensureDeferred
async def test_leavesAndWhoInABigRoom(serve):
    """A leave from a big room's window brings in the next name by join order, one from outside it
    changes only the count; /who says the count and "and N more", /who NAME finds a name outside
    the window (looked up in the room's list, not the page's)."""
    room, pages, names = await storm(serve, 60)  # the first wave, 20 names, is the window
    watcher = pages[0]
    assert presenceOf(watcher) == names[:LIST_MAX]
    before = len(watcher.frames)
    pages[1].close()  # user0001: in the window
    pages[-2].close()  # user0058: outside it
    await eventually(lambda: len(room.online()) == 58, "the two pages to be gone")
    room.throttle.reactor.advance(PRESENCE_INTERVAL)
    await watcher.waitFor(lambda: countOf(watcher) == 58, "the two leaves")
    window = [*names[:1], *names[2:LIST_MAX + 1]]
    assert presenceOf(watcher) == window and room.presence() == window
    changes = [f["args"] for f in watcher.frames[before:] if f.get("method") == "presenceChanged"]
    assert [name for args in changes for name in args[0]] == [names[LIST_MAX]]
    assert [name for args in changes for name in args[1]] == [names[1]]
    answer = await watcher.call("say", "/who")
    assert answer["type"] == "result"
    told = await watcher.waitFor(lambda: [c[0] for c in watcher.calls("displayMessage")
                                          if c[0].startswith("In #")], "/who's answer")
    assert told[-1] == f"In #lobby (58 online): {', '.join(window)} and 38 more"
    await watcher.call("say", "/who USER0040")
    await watcher.waitFor(lambda: any(c[0] == "user0040 is in #lobby." for c in watcher.calls("displayMessage")),
                          "/who NAME's answer")
    await watcher.call("say", "/who user0058")
    await watcher.waitFor(lambda: any(c[0] == "No one called user0058 is in #lobby."
                                      for c in watcher.calls("displayMessage")), "/who NAME's answer")


@pytest_twisted.ensureDeferred
async def test_aPageOpenedAfterTheCrowdGetsTheWindow(serve):
    """A page that opens a big room once the crowd is in is sent the window and the count (one
    list of 20 names, whatever the room's size), and its drawn page says "and N more"."""
    clock = Clock()
    room = Room(reactor=clock, presenceListMax=LIST_MAX)
    server = await serve(elementFactory=room.makeChatter)
    pages = await connectAll(server, 50)
    names = [f"user{i:04}" for i in range(50)]
    await logIn(pages, names)
    clock.advance(PRESENCE_INTERVAL)
    await eventually(lambda: all(countOf(p) == 50 for p in pages), "every page to count everyone")
    late = await server.connect(hello={"render": True})
    await late.waitFor(lambda: late.calls("updatePresence"), "the first list")
    window = presenceOf(pages[0])
    assert window is not None and len(window) == LIST_MAX
    assert late.calls("updatePresence") == [[window, 50]]
    html = next(f for f in late.frames if f["type"] == "welcome")["element"]["html"]
    assert html.count("<li>") == LIST_MAX and "50 online" in html and "and 30 more" in html
    assert 'data-count="50"' in html


@pytest_twisted.ensureDeferred
async def test_twoProcessesOnRedisShowOneBoundedWindow(cluster):
    """Two processes on one Redis, a room of 24 and a room of 96 pages (window 8), each crowd split
    over both: every page of a room shows the same window and the room's count, and a page of the
    big room is sent about the bytes a page of the small one is; a page opened late on either
    process gets the same window."""
    servers = cluster.start(2, "--presence-list-max", "8")
    perPage = {}
    for room, size in (("small", 24), ("big", 96)):
        pages = await gatherResults([
            ensureDeferred(LiveTestClient.connect(wsUrl(servers[i % 2]), hello={"page": pagePath(room)}))
            for i in range(size)])
        cluster.pages.extend(pages)
        await eventually(lambda: all(p.calls("updatePresence") for p in pages), "every first list")
        names = [f"{room}{i:03}" for i in range(size)]
        wave = size // WAVES
        for start in range(0, size, wave):
            await logIn(pages[start:start + wave], names[start:start + wave])
            await eventually(lambda: countOf(pages[0]) == start + wave, "the wave's batch")
        await eventually(lambda: all(countOf(p) == size for p in pages), "every page to count everyone",
                         deadline=30)
        windows = {tuple(presenceOf(p) or []) for p in pages}
        assert len(windows) == 1, windows
        [window] = windows
        assert len(window) == 8 and set(window) <= set(names[:wave]), window  # the first wave's
        for server in servers:
            late = await cluster.page(server, room=room)
            await late.waitFor(lambda: late.calls("updatePresence"), "the first list")
            assert late.calls("updatePresence") == [[list(window), size]]
        perPage[room] = max(bytesOf(p) for p in pages)
    assert perPage["big"] < 1.2 * perPage["small"], perPage


@pytest_twisted.ensureDeferred
async def test_aPageThatDropsInABigRoomGetsEveryBatchOnce(serve):
    """In a big room, a page that drops during a storm and resumes is sent every batch it missed
    (window changes and counts), exactly once, in order: its room stream is a steady page's, and its
    first list stays the one numbered frame it was."""
    clock = Clock()
    room = Room(reactor=clock, presenceListMax=LIST_MAX)
    server = await serve(elementFactory=room.makeChatter)
    [steady, dropper, *crowd] = await connectAll(server, 82)
    await logIn([steady, dropper], ["steady", "dropper"])
    windows = []

    async def aLeave(number: int) -> None:
        if number == 2:  # one of the window leaves while the page is away
            windows.append(presenceOf(steady))
            crowd[0].close()
            await eventually(lambda: "c0-0" not in room.online(), "the leave")

    await wavesWithADrop([crowd[i:i + 20] for i in range(0, 80, 20)], dropper, 1, 3, clock, aLeave)
    for page in (steady, dropper):
        await page.waitFor(lambda p=page: countOf(p) == 81, "everyone counted")
    assert dropper.duplicates == 0
    assert len(dropper.calls("updatePresence")) == 1
    assert roomFrames(dropper) == roomFrames(steady)
    assert presenceOf(dropper) == presenceOf(steady) == room.presence()
    [before], after = windows, room.presence()
    assert len(after) == LIST_MAX and set(before) - set(after) == {"c0-0"}
    assert len(set(after) - set(before)) == 1  # the next by join order came in

#: The terms of the roster tests: a window of three names.
WINDOW_TERMS = Presence(changed="crowdMoved", listMax=3)

#: Batches published one after the other (joined, left), and the change
#: each publishes past three names: the window's, and the count.
BATCHES = [
    ((["a", "b"], []), [["a", "b"], []]),  # three or fewer: as a small room always was
    ((["c", "d", "e"], []), [["c"], [], 5]),  # d and e join after the window's three
    (([], ["a"]), [["d"], ["a"], 4]),  # the next by join order comes in
    (([], ["e"]), [[], []]),  # outside the window; three again: everyone is listed
    ((["f", "g"], []), [[], [], 5]),  # the window does not change: only the count
]


async def published(d) -> None:
    """
    Wait for what C{publishChanges} returned, if anything.
    """
    if d is not None:
        await d


async def publishBatches(roster, stream, page) -> list:
    """
    Publish L{BATCHES} with C{roster} on C{stream}; the changes C{page}
    was sent.
    """
    for (joined, left), _ in BATCHES:
        await published(roster.publishChanges("r", stream, [], joined, left))
    await eventually(lambda: len(page.calls()) == len(BATCHES), "every batch")
    return [args for _, _, args in page.calls()]


@pytest_twisted.ensureDeferred
async def test_theMemoryRosterPublishesTheWindowsChanges():
    """Past three names the memory roster publishes the window's changes and the count (nothing
    more), its members are the window and the count, and a name outside the window is found."""
    backplane = MemoryBackplane(WINDOW_TERMS)
    stream, page = backplane.stream("room:r", "room", 1000), Page()
    stream.subscribe(page)
    assert await publishBatches(backplane.roster, stream, page) == [change for _, change in BATCHES]
    assert await backplane.roster.members("r", stream) == (["b", "c", "d"], stream.offset, 5)
    assert await backplane.roster.lookup("r", "G") == "g"
    assert await backplane.roster.lookup("r", "a") is None
    assert backplane.roster.publishChanges("r", stream, [], ["g"], []) is None  # known already: nothing
    assert len(page.calls()) == len(BATCHES)


@pytest_twisted.ensureDeferred
async def test_theRedisRosterPublishesTheSameWindow(redisServer, backplanes):  # noqa: F811
    """The Redis roster, computing the window in its scripts from the shared list, publishes what
    the memory roster does; when a process dies, the reaper's one batch tells the window's changes
    and the count."""
    a, b = [await startBackplane(redisServer, gracePeriod=0.5) for _ in range(2)]
    backplanes += [a, b]
    for backplane in (a, b):
        backplane.roster.usePresence(WINDOW_TERMS)
    (sa, pa), (sb, pb) = await openStream(a), await openStream(b)
    assert await publishBatches(a.roster, sa, pb) == [change for _, change in BATCHES]
    assert await b.roster.members("r", sb) == (["b", "c", "d"], sb.offset, 5)
    assert await b.roster.lookup("r", "G") == "g" and await b.roster.lookup("r", "a") is None
    # Process a's users hold the names shown; a stops beating and b's reaper ends them.
    a.deadAfter = b.deadAfter = 1.0
    for name in ["b", "c", "d", "f"]:
        a.sessions.save(_session(f"s-{name}", name))
        await a.roster.hold(Holder(f"s-{name}"), name, "r", sa, [])
    await b.roster.hold(Holder("s-g"), "g", "r", sb, [])
    a._heartbeat.stop()
    await eventually(lambda: pb.calls()[-1][2] == [["g"], ["b", "c", "d"]], "the reaper's batch",
                     deadline=15)
    assert await b.roster.members("r", sb) == (["g"], sb.offset)


def _session(ident: str, name: str):
    """
    A session as the runtime saves it: its id, page and element state.
    """
    return type("Session", (), {"ident": ident, "page": "/room/r", "element": type(
        "E", (), {"sessionState": lambda self: {"username": name}})()})()


@pytest_twisted.ensureDeferred
async def test_aBigRoomKeepsItsWindowAcrossAStateFileRestart(onePort, tmp_path):
    """A room of five listing two, restarted with --state-file: every user resumes, and the room's
    window and count go on from the same list: when one of the window leaves, every page lists the
    next by join order and counts one less (no name left behind)."""
    options = ("--state-file", str(tmp_path / "state.json"), "--drain-seconds", "0.3",
               "--presence-list-max", "2")
    first = onePort.start(*options)
    clients: list = []
    try:
        for name in ["ann", "bob", "cy", "dee", "eve"]:  # joining order
            await chatClient(first, name, clients)
        await eventually(lambda: all(c.presence == ["ann", "bob"] and c.presenceCount == 5
                                     for c in clients), "the window and count")
        await onePort.sigterm(first)
        second = onePort.start(*options)
        second.waitForLog(r"resuming 5 session\(s\) from the state file")
        await eventually(lambda: all(c.connected for c in clients), "everyone back")
        await withDeadline(clients[0].close(), 5)  # ann, of the window
        rest = clients[1:]
        await eventually(lambda: all(c.presence == ["bob", "cy"] and c.presenceCount == 4 for c in rest),
                         "the next by join order in the window")
        assert all(c.heard.newSessions == [] for c in rest)
    finally:
        for client in clients:
            await withDeadline(client.close(), 5)
