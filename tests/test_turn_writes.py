"""
One write per page per reactor turn (issue 14): what the runtime sends a
page in one turn — the numbered frames for it alone (answers, welcome,
notifications) and the stream frames it gathers with every other page —
leaves at the end of the turn in one piece, in the order it was given.

A connection on a recording transport and a fake clock: the end of the
turn is the coalescer's zero-delay call, run by advancing the clock.
"""

from autobahn.websocket.protocol import PreparedMessage
from jinja2 import Environment
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatthing.live import LiveElement
from chatthing.live._factory import LiveServerFactory


class RecordingTransport(StringTransport):
    """
    A transport that keeps each C{write} apart.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


def openConnection(clock: Clock):
    factory = LiveServerFactory(lambda: LiveElement(), Environment(), reactor=clock)
    connection = factory.buildProtocol(None)
    transport = RecordingTransport()
    connection.makeConnection(transport)
    connection.state = connection.STATE_OPEN
    return factory, connection, transport


def frame(payload: bytes) -> bytes:
    return PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=True).payloadHybi


def test_answersAndStreamFramesOfOneTurnLeaveInOneWrite():
    """An answer, a room's frame and a notification in one turn: nothing written until the turn ends, then one write, in order."""
    clock = Clock()
    _, connection, transport = openConnection(clock)
    answer = b'{"type":"result","id":1,"value":null,"seq":1}'
    emitted = b'{"type":"emit","stream":"room","offset":1,"method":"m","args":[]}'
    notified = b'{"type":"emit","method":"n","args":[],"seq":2}'
    connection.sendPayload(answer)
    connection.sendPrepared(PreparedMessage(emitted, isBinary=False, applyMask=False, doNotCompress=True))
    connection.sendPayload(notified)
    assert transport.writes == []
    clock.advance(0)
    assert transport.writes == [frame(answer) + frame(emitted) + frame(notified)]


def test_aControlFrameComesAfterWhatWasGathered():
    """A ping written in the middle of a turn goes after the frames gathered before it, not before them."""
    clock = Clock()
    _, connection, transport = openConnection(clock)
    answer = b'{"type":"result","id":1,"value":null,"seq":1}'
    connection.sendPayload(answer)
    connection.sendPing(b"beat")
    clock.advance(0)
    written = b"".join(transport.writes)
    assert written.startswith(frame(answer))
    assert written[len(frame(answer)):] == b"\x89\x04beat"


def test_aClosingConnectionIsSentNothingMore():
    """A frame gathered for a connection that starts closing before the turn ends is not written after its close frame."""
    clock = Clock()
    _, connection, transport = openConnection(clock)
    connection.sendClose(1000)
    transport.writes.clear()
    connection.sendPayload(b'{"type":"result","id":1,"value":null,"seq":1}')
    clock.advance(0)
    assert transport.writes == []


class StalledTransport(RecordingTransport):
    """
    A transport whose peer does not read: all it is given waits in its
    buffer (C{_tempDataLen}, as in Twisted's TCP transport).
    """

    connected = True
    disconnecting = False

    def __init__(self) -> None:
        super().__init__()
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.offset = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self._tempDataLen += len(data)
        super().write(data)

    def abortConnection(self) -> None:
        self.aborted = True


def test_aPageThatDoesNotReadNeverHoldsMoreThanFourTimesItsLimit():
    """One turn gathering more than the room between a stalled page's backlog and four times its limit cuts the page
    without buffering that turn: a page holds at most four times the limit however many frames a turn gathers."""
    from chatthing.live._settings import LiveSettings

    clock = Clock()
    factory = LiveServerFactory(lambda: LiveElement(), Environment(), reactor=clock,
                                settings=LiveSettings(maxOutgoingBytes=1000))
    connection = factory.buildProtocol(None)
    transport = StalledTransport()
    connection.makeConnection(transport)
    connection.state = connection.STATE_OPEN
    # 3,500 bytes waiting already (past the limit: a second look is due)...
    transport.write(b"x" * 3500)
    # ...and one turn gathering 1,200 more in five frames.
    for _ in range(5):
        connection.sendPayload(b"y" * 235)
    clock.advance(0)
    assert transport.aborted
    assert transport._tempDataLen == 3500, "the turn's frames were buffered past four times the limit"
