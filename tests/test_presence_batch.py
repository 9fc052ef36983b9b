"""
Presence in batches (issue 14): a room's joins, leaves and renames go to its
pages as one C{presenceChanged} per interval, so a crowd logging in costs
each page a few frames, not a few per login; with real servers and real
WebSocket clients.  The room's presence timer runs on a L{Clock} the test
moves, so that what makes a batch is the test's choice, not the machine's
speed (mocks only for time).
"""

import json

import cluster as harness
import pytest
import pytest_twisted
from cluster import wsUrl
from conftest import eventually, presenceOf
from test_chatroom_units import Page
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import Clock

from chatthing.chat import Room
from chatthing.chat.presence import PRESENCE_INTERVAL, PresenceBatch, alertLines
from chatthing.live import _wire
from chatthing.live.testing import LiveTestClient

#: Pages in the join storm.
STORM = 200

#: The harness's fixtures (tests/cluster.py), for the cluster test.
cluster = harness.cluster
redisServer = harness.redisServer


def joined(name: str) -> list[str]:
    return [f" * user {name} has joined the room"]


def roomFrames(page: LiveTestClient) -> list[tuple]:
    """
    What C{page} got on the room's stream: C{(offset, method, args)}.
    """
    return [(f["offset"], f["method"], f["args"]) for f in page.frames
            if f["type"] == "emit" and f.get("stream") == "room"]


def counted(page: LiveTestClient) -> int:
    """
    The frames C{page} was sent that carry something (all but the
    handshake and acknowledgements).
    """
    return len([f for f in page.frames if f["type"] not in ("welcome", "resumed", "ack")])


async def startRoom(serve, clock: Clock) -> tuple:
    room = Room(reactor=clock)
    server = await serve(elementFactory=room.makeChatter)
    return room, server


async def connectAll(server, count: int) -> list[LiveTestClient]:
    """
    C{count} new pages of the room, connected at once, each with its first
    presence list.
    """
    pages = await gatherResults([ensureDeferred(server.connect()) for _ in range(count)])
    await eventually(lambda: all(p.calls("updatePresence") for p in pages), "every first list")
    return pages


async def logIn(pages: list[LiveTestClient], names: list[str]) -> None:
    """
    Every page of C{pages} asks at once to log in under its name of
    C{names}; returns once each has its answer.
    """
    calls = [(page, page.startCall("setUsername", name)) for page, name in zip(pages, names)]

    def answered() -> bool:
        ids = [{f.get("id") for f in page.frames if f["type"] == "result"} for page, _ in calls]
        return all(ident in got for (_, ident), got in zip(calls, ids))

    await eventually(answered, "every login's answer", deadline=30)


@pytest_twisted.ensureDeferred
async def test_aJoinStormCostsLinearFrames(serve):
    """N pages log in at once: the pages are sent O(N) frames in all (old: ~2.5 N^2), and every
    page ends with the same list of all N names and the same alert lines."""
    clock = Clock()
    room, server = await startRoom(serve, clock)
    pages = await connectAll(server, STORM)
    names = [f"user{i:03}" for i in range(STORM)]
    await logIn(pages, names)
    clock.advance(PRESENCE_INTERVAL)  # the end of the interval: the gathered batch goes
    await eventually(lambda: all(presenceOf(p) == names for p in pages), "every page to list everyone",
                     deadline=30)
    total = sum(counted(p) for p in pages)
    assert total < 10 * STORM, f"{total} frames for {STORM} logins"
    alerts = {tuple(map(tuple, p.calls("displayMessage"))) for p in pages}
    assert len(alerts) == 1
    [lines] = alerts
    assert len(lines) == 2 and "others joined the room" in lines[-1][0], lines
    assert {len(p.calls("presenceChanged")) for p in pages} == {2}
    assert sum(len(args[0]) for args in pages[0].calls("presenceChanged")) == STORM


@pytest_twisted.ensureDeferred
async def test_aQuietRoomTellsAJoinAtOnce(serve):
    """In a room quiet for an interval, a login is told at once, as always: its own line and the
    presence change, with no timer run."""
    clock = Clock()
    room, server = await startRoom(serve, clock)
    [watcher, ann] = await connectAll(server, 2)
    await logIn([watcher], ["watcher"])
    clock.advance(PRESENCE_INTERVAL)  # quiet since
    await logIn([ann], ["ann"])
    await watcher.waitFor(lambda: joined("ann") in watcher.calls("displayMessage")
                          and presenceOf(watcher) == ["ann", "watcher"], "ann's join")
    assert watcher.calls("presenceChanged") == [[["watcher"], []], [["ann"], []]]


@pytest_twisted.ensureDeferred
async def test_aJoinAndLeaveInOneBatchNetOut(serve):
    """A name that joins and leaves within one batch is in neither list of its presenceChanged;
    its alert lines are told, in order."""
    clock = Clock()
    room, server = await startRoom(serve, clock)
    [watcher, bob, carol] = await connectAll(server, 3)
    await logIn([watcher], ["watcher"])
    await logIn([bob, carol], ["bob", "carol"])
    bob.close()
    await eventually(lambda: room.online() == ["watcher", "carol"], "bob to be gone")
    clock.advance(PRESENCE_INTERVAL)
    await watcher.waitFor(lambda: len(watcher.calls("presenceChanged")) == 2, "the batch")
    assert watcher.calls("presenceChanged")[-1] == [["carol"], []]
    assert watcher.calls("displayMessage") == [
        joined("watcher"), joined("bob"), joined("carol"), [" * user bob has left the room"]]
    assert presenceOf(watcher) == ["carol", "watcher"]


async def wavesWithADrop(waves: list[list[LiveTestClient]], dropper: LiveTestClient, dropAt: int,
                         resumeAt: int, clock: Clock, meanwhile=None) -> None:
    """
    Each wave of C{waves} logs in (as C{c<wave>-<i>}) and is published
    as one batch; C{dropper} drops before wave C{dropAt} and resumes
    before wave C{resumeAt}; C{await meanwhile(number)}, if given, after
    each wave's logins, before its batch goes.
    """
    for number, wave in enumerate(waves):
        if number == dropAt:
            dropper.drop()
            await dropper.closed()
        if number == resumeAt:
            await dropper.resume()
        await logIn(wave, [f"c{number}-{i}" for i in range(len(wave))])
        if meanwhile is not None:
            await meanwhile(number)
        clock.advance(PRESENCE_INTERVAL)


@pytest_twisted.ensureDeferred
async def test_aPageThatDropsInTheStormGetsEveryBatchOnce(serve):
    """A page that drops during a storm and resumes is sent every batch it missed, exactly once,
    in order: its room stream is the same as a page's that never dropped."""
    clock = Clock()
    room, server = await startRoom(serve, clock)
    [steady, dropper, *crowd] = await connectAll(server, 52)
    await logIn([steady, dropper], ["steady", "dropper"])
    await wavesWithADrop([crowd[i:i + 10] for i in range(0, 50, 10)], dropper, 2, 4, clock)
    everyone = sorted(["steady", "dropper", *(f"c{n}-{i}" for n in range(5) for i in range(10))])
    for page in (steady, dropper):
        await page.waitFor(lambda p=page: presenceOf(p) == everyone, "everyone listed")
    assert dropper.duplicates == 0
    assert len(dropper.calls("updatePresence")) == 1
    assert roomFrames(dropper) == roomFrames(steady)
    offsets = [offset for offset, _, _ in roomFrames(dropper)]
    assert offsets == sorted(set(offsets))
    # steady's own, then one per wave (dropper's join went with the first).
    assert len(steady.calls("presenceChanged")) == 1 + 5


@pytest_twisted.ensureDeferred
async def test_theFirstListIsEncodedOncePerChange(serve):
    """Pages that connect between two changes are sent the same encoded list (one encoding per
    change of the room, spliced into each page's own numbered frame)."""
    clock = Clock()
    room, server = await startRoom(serve, clock)
    [ann] = await connectAll(server, 1)
    await logIn([ann], ["ann"])
    encoded = room.shown.encoded()
    pages = await connectAll(server, 3)
    assert room.shown.encoded() is encoded
    assert [p.calls("updatePresence") for p in pages] == [[[["ann"]]]] * 3
    await logIn([pages[0]], ["bea"])
    clock.advance(PRESENCE_INTERVAL)
    await ann.waitFor(lambda: presenceOf(ann) == ["ann", "bea"], "bea's join")
    assert room.shown.encoded() is not encoded and room.shown.encoded() == b'[["ann","bea"]]'


@pytest_twisted.ensureDeferred
async def test_aStormSplitOverTwoProcesses(cluster):
    """Two processes on one Redis, half of a crowd logging in on each at once: every page of both
    ends with the same list of everyone and the same alert lines, each batch one presenceChanged."""
    servers = cluster.start(2)
    pages = await gatherResults([ensureDeferred(LiveTestClient.connect(wsUrl(servers[i % 2])))
                                 for i in range(60)])
    cluster.pages.extend(pages)
    await eventually(lambda: all(p.calls("updatePresence") for p in pages), "every first list")
    names = sorted(f"p{i:02}" for i in range(60))
    await logIn(pages, names)
    await eventually(lambda: all(presenceOf(p) == names for p in pages), "every page to list everyone",
                     deadline=30)
    assert len({tuple(map(tuple, p.calls("displayMessage"))) for p in pages}) == 1
    assert len({json.dumps(roomFrames(p)) for p in pages}) == 1
    batches = len(pages[0].calls("presenceChanged"))
    # Each batch: at most a time, three alert lines (or one for many) and
    # the change itself.
    assert len(roomFrames(pages[0])) <= 5 * batches
    assert batches < len(names)


def test_alertLinesPastTheThreshold():
    """Up to three joins (or leaves, or renames) in a batch are one line each; more are one line,
    where the last of them was; renames and leaves are netted in the diff only."""
    batch = PresenceBatch()
    for name in ["ann", "bob", "cy", "dee"]:
        batch.joined(name)
    batch.left("zed")
    batch.renamed("old", "new")
    assert alertLines(batch.events) == [
        " * ann, bob and 2 others joined the room",
        " * user zed has left the room",
        " * user old is now known as new",
    ]
    assert batch.diff() == (["ann", "bob", "cy", "dee", "new"], ["old", "zed"])
    batch.left("dee")
    assert batch.diff() == (["ann", "bob", "cy", "new"], ["old", "zed"])


def test_aRestoredUserNotShownIsListedQuietly():
    """A session restored from another process whose user the room does not list (that process died
    before its batch went) is listed with the next batch, with no alert line; one it lists is not."""
    room = Room(reactor=Clock())
    watcher, moved = Page(room), Page(room)
    moved.element.restore({"username": "ann"})
    assert watcher.received[-1] == ("presenceChanged", ["ann"], [])
    assert room.presence() == ["ann"]
    again = Page(room)
    again.element.restore({"username": "ann"})
    assert len(watcher.received) == 2 and watcher.shown == []


def test_theSplicedFrameIsTheEncodedFrame():
    """A one-page frame with its arguments encoded once is, byte for byte, the frame encoded whole
    (non-ASCII and a lone surrogate included)."""
    for args in ([["ann", "zoé", "\u0627\u0644"]], [["\ud800"]], [[]]):
        whole = _wire.encode({**_wire.notifyFrame("updatePresence", args), "seq": 7})
        assert _wire.notifyPayload("updatePresence", _wire.encodeArgs(args), 7) == whole


@pytest_twisted.ensureDeferred
async def test_thePageDrawsTheListMadeOncePerChange(serve):
    """A page drawn between two changes (its welcome's element HTML) shows the room's list, escaped,
    from the HTML made once for that change, not looped over for every page; a change makes it anew."""

    async def drawn() -> str:
        page = await server.connect(hello={"render": True})
        return next(f for f in page.frames if f["type"] == "welcome")["element"]["html"]

    clock = Clock()
    room, server = await startRoom(serve, clock)
    [ann] = await connectAll(server, 1)
    await logIn([ann], ["ann"])
    html = await drawn()
    assert "<li>ann</li>" in html and "1 online" in html
    items = room.presenceItems()
    await drawn()
    assert room.presenceItems() is items
    [bea] = await connectAll(server, 1)
    await logIn([bea], ["b<e>a"])
    clock.advance(PRESENCE_INTERVAL)
    await ann.waitFor(lambda: len(presenceOf(ann)) == 2, "the second join")
    html = await drawn()
    assert "<li>ann</li><li>b&lt;e&gt;a</li>" in html and "2 online" in html
    assert room.presenceItems() is not items


def test_theIntervalGrowsWithTheRoom():
    """A busy room of many pages gets its batches less often (pages / 10,000 seconds apart past
    2,500 pages), so a storm costs each page about the same few batches whatever the room's size;
    a room of a few pages keeps 250 ms, and a quiet room is told at once either way."""
    from chatthing.chat.presence import PRESENCE_DELIVERIES_PER_SECOND, PresenceThrottle

    def sendTimes(pages: int) -> list[float]:
        clock = Clock()
        sent: list[float] = []
        throttle = PresenceThrottle(lambda batch: sent.append(clock.seconds()), reactor=clock,
                                    pages=lambda: pages)
        for n in range(40):  # a join every 50 ms for 2 s
            throttle.batch.joined(f"user{n}")
            throttle.changed()
            clock.advance(0.05)
        clock.advance(10)
        return sent

    small = sendTimes(20)
    assert small[0] == 0 and len(small) == 9, small  # at once, then every 250 ms
    big = sendTimes(20_000)
    gap = 20_000 / PRESENCE_DELIVERIES_PER_SECOND
    assert big[0] == 0 and len(big) == 2 and big[1] == pytest.approx(gap), big  # at once, then after 2 s
