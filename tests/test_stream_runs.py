"""
A room's frames gathered once for the room, not once a page (issue 14,
latency): what a stream emits in one reactor turn is one L{StreamRun},
written at the end of the turn in one pass over its pages, each page's
frames still in the order they were given.

Pages and connections are stand-ins that record what is written; the end
of the turn is the coalescer's zero-delay call on a fake clock.
"""

import socket

import pytest_twisted
from conftest import eventually
from twisted.internet.task import Clock

from chatthing.live import LiveSettings
from chatthing.live._sending import WriteCoalescer
from chatthing.live._stream import PassingStream, Stream


class Connection:
    """
    What the coalescer writes to: records each write.
    """

    gathered = None
    directSend = None

    def __init__(self, page: "Page") -> None:
        self.session = page
        self.writes: list[bytes] = []

    def writeCoalesced(self, data: bytes) -> None:
        self.writes.append(data)


class Page:
    """
    A page subscribed to streams, through its connection.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.connection: Connection | None = Connection(self)

    @property
    def writes(self) -> list[bytes]:
        assert self.connection is not None
        return self.connection.writes


def room(clock, pages, name="room"):
    coalescer = WriteCoalescer.of(clock)
    stream = Stream(name)
    for page in pages:
        stream.subscribePage(page, coalescer)
    return coalescer, stream


def payload(stream, offset):
    """The bytes a stream's frame number C{offset} was sent as."""
    return [m.payloadHybi for m in stream.since(offset - 1)][0]


def test_aRoomsFrameIsGatheredOnceNotOncePerPage():
    """Until the turn ends, an emit touches no page; then each page is written once, with every frame of the turn."""
    clock = Clock()
    pages = [Page(f"p{i}") for i in range(50)]
    _, stream = room(clock, pages)
    stream.emit("said", "one")
    stream.emit("said", "two")
    assert all(page.connection.gathered is None and page.writes == [] for page in pages)
    clock.advance(0)
    both = payload(stream, 1) + payload(stream, 2)
    assert [page.writes for page in pages] == [[both]] * 50


def test_aPageSentSomethingElseInTheTurnKeepsItsOrder():
    """An answer between two of the room's frames reaches its page between them; the other pages get both frames in one write."""
    clock = Clock()
    alice, bob = Page("alice"), Page("bob")
    coalescer, stream = room(clock, [alice, bob])
    stream.emit("said", "one")
    coalescer.add(alice.connection, b"<answer>")
    stream.emit("said", "two")
    clock.advance(0)
    one, two = payload(stream, 1), payload(stream, 2)
    assert b"".join(alice.writes) == one + b"<answer>" + two
    assert bob.writes == [one + two]


def test_whatWasGatheredBeforeTheRoomsFrameGoesFirst():
    """A frame gathered for a page before the room emitted is written before the room's frame, in one write."""
    clock = Clock()
    alice, bob = Page("alice"), Page("bob")
    coalescer, stream = room(clock, [alice, bob])
    coalescer.add(alice.connection, b"<welcome>")
    stream.emit("said", "one")
    clock.advance(0)
    assert alice.writes == [b"<welcome>" + payload(stream, 1)]
    assert bob.writes == [payload(stream, 1)]


def test_aFlushInTheTurnSendsTheRoomsFramesBeforeIt():
    """A page's own write in the middle of a turn (a ping, a close) goes after the room's frames emitted before it."""
    clock = Clock()
    alice, bob = Page("alice"), Page("bob")
    coalescer, stream = room(clock, [alice, bob])
    stream.emit("said", "one")
    coalescer.flush(alice.connection)
    assert alice.writes == [payload(stream, 1)]
    stream.emit("said", "two")
    clock.advance(0)
    assert alice.writes == [payload(stream, 1), payload(stream, 2)]
    assert bob.writes == [payload(stream, 1) + payload(stream, 2)]


def test_aPageSubscribedInTheTurnGetsOnlyWhatCameAfter():
    """A page that joins between two frames of one turn is sent the second only; one that leaves, the first only."""
    clock = Clock()
    alice, bob, carol = Page("alice"), Page("bob"), Page("carol")
    coalescer, stream = room(clock, [alice, bob])
    stream.emit("said", "one")
    stream.subscribePage(carol, coalescer)
    stream.unsubscribe(bob)
    stream.emit("said", "two")
    clock.advance(0)
    one, two = payload(stream, 1), payload(stream, 2)
    assert b"".join(alice.writes) == one + two
    assert bob.writes == [one]
    assert carol.writes == [two]


def test_framesOfTwoStreamsKeepTheOrderTheyWereEmittedIn():
    """A page in two rooms that emit a, b, a in one turn receives them in that order."""
    clock = Clock()
    alice = Page("alice")
    coalescer, first = room(clock, [alice], "first")
    second = PassingStream("second")
    second.subscribePage(alice, coalescer)
    first.emit("said", "a1")
    second.emit("typing", "b1")
    first.emit("said", "a2")
    clock.advance(0)
    written = b"".join(alice.writes)
    a1, a2 = payload(first, 1), payload(first, 2)
    b1 = written[len(a1):-len(a2)]
    assert written.startswith(a1) and written.endswith(a2) and b'"b1"' in b1


def test_aPageAwayOrResumingInTheTurnIsNotSentTheRunAgain():
    """A page with no connection is skipped; one that resumes in the turn gets the run's frames from its replay, not twice."""
    clock = Clock()
    away, resuming, staying = Page("away"), Page("resuming"), Page("staying")
    coalescer, stream = room(clock, [away, resuming, staying])
    away.connection = None
    stream.pageMoved(away, None)
    stream.emit("said", "one")
    # It resumes: attached to a new connection, sent what it missed (the
    # session's resume does both, L{LiveSession.attach} skipping the run).
    resuming.connection = Connection(resuming)
    stream.pageMoved(resuming, resuming.connection)
    coalescer.skip(resuming)
    for message in stream.since(0):
        coalescer.add(resuming.connection, message.payloadHybi)
    stream.emit("said", "two")
    clock.advance(0)
    one, two = payload(stream, 1), payload(stream, 2)
    assert resuming.writes == [one + two]
    assert staying.writes == [one + two]


def test_theNextTurnStartsAfresh():
    """A run ends with its turn: the next turn's frame is written in a write of its own, to the pages there are then."""
    clock = Clock()
    alice, bob = Page("alice"), Page("bob")
    coalescer, stream = room(clock, [alice])
    stream.emit("said", "one")
    clock.advance(0)
    stream.subscribePage(bob, coalescer)
    stream.emit("said", "two")
    clock.advance(0)
    assert alice.writes == [payload(stream, 1), payload(stream, 2)]
    assert bob.writes == [payload(stream, 2)]
    assert clock.getDelayedCalls() == []


def test_oneCoalescerForEveryFactoryOfAReactor():
    """Sites on one reactor share its coalescer, so a page's stream frames and its own are written in one order."""
    clock = Clock()
    assert WriteCoalescer.of(clock) is WriteCoalescer.of(clock)
    assert WriteCoalescer.of(clock) is not WriteCoalescer.of(Clock())


# On a real server: the run's pass writes straight to a page's socket, and
# never ahead of bytes its transport still holds.


def countWrites(transport) -> list:
    """Record every C{write} made to C{transport} (bytes handed to Twisted rather than sent)."""
    writes: list = []
    write = transport.write

    def recording(data):
        writes.append(len(data))
        write(data)

    transport.write = recording
    return writes


@pytest_twisted.ensureDeferred
async def test_aPageThatFallsBehindGetsEverythingInOrderThenStraightAgain(serve):
    """
    A page whose socket is full has the rest of a frame buffered in its
    transport, and every frame after it goes behind that, in order, not
    straight to the socket ahead of it; once it has read everything, the
    next frame goes straight to the socket again (no write to the transport).
    """
    server = await serve(LiveSettings(frameRate=1000, frameBurst=1000))
    alice, bob = await server.login("alice"), await server.login("bob")
    bobSide = server.serverSide(bob)
    bobSide.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writes = countWrites(bobSide.transport)
    said = lambda client: [text for _, text in client.calls("displayUserMessage")]  # noqa: E731

    await alice.call("say", "before")
    await bob.waitFor(lambda: "before" in said(bob), "the first message")
    assert writes == [] and bobSide.directSend is not None

    bob.protocol.transport.pauseProducing()  # bob stops reading
    texts = [f"{i:03d} " + "x" * 1500 for i in range(60)]
    for text in texts:
        answer = await alice.call("say", text)
        assert answer["type"] == "result", answer
    assert writes, "bob's socket never filled: nothing was buffered in its transport"
    assert bobSide.directSend is None
    bob.protocol.transport.resumeProducing()
    await bob.waitFor(lambda: len(said(bob)) == 61, "everything alice said", deadline=20)
    assert said(bob) == ["before", *texts] and bob.duplicates == 0

    # Drained: the next message goes straight to the socket again (after
    # one write through the coalescer finds the transport empty).
    await eventually(lambda: bobSide.transport.dataBuffer == b"" and not bobSide.transport._tempDataLen,
                     "bob's transport to drain")
    await alice.call("say", "after one")
    await alice.call("say", "after two")
    buffered = len(writes)
    await alice.call("say", "after three")
    await bob.waitFor(lambda: said(bob)[-1:] == ["after three"], "the last message")
    assert len(writes) == buffered and bobSide.directSend is not None
