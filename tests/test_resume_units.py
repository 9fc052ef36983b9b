"""
Unit tests of the pieces that make delivery reliable, with no sockets and a
fake clock: the replay buffer, streams, the rate limit, the origin check,
and a session's grace period and resumption.
"""

import json

import pytest
from test_live_units import FakeConnection, preparedPayload
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatthing.live import ElementDetached, LiveElement, LiveSettings, Stream, expose
from chatthing.live._origin import originAllowed
from chatthing.live._ratelimit import TokenBucket
from chatthing.live._replay import ReplayBuffer, ReplayOverflow
from chatthing.live._session import LiveSession

# ReplayBuffer


class ReplayBufferTests(SynchronousTestCase):
    def filled(self, count, limit=10):
        buffer = ReplayBuffer(limit)
        for i in range(1, count + 1):
            self.assertEqual(buffer.nextSeq(), i)
            buffer.add(b"frame %d" % i)
        return buffer

    def test_numbering(self):
        """Frames are numbered 1, 2, 3..., and all kept until acknowledged."""
        buffer = ReplayBuffer(10)
        self.assertEqual((buffer.nextSeq(), buffer.lastSeq, buffer.ackedSeq, len(buffer)), (1, 0, 0, 0))
        buffer = self.filled(3)
        self.assertEqual((buffer.nextSeq(), buffer.lastSeq, buffer.ackedSeq, len(buffer)), (4, 3, 0, 3))

    def test_ackTrims(self):
        """An ack forgets every frame up to its seq, and no more."""
        buffer = self.filled(5)
        buffer.ack(2)
        self.assertEqual((buffer.ackedSeq, len(buffer)), (2, 3))
        self.assertEqual(buffer.since(2), [b"frame 3", b"frame 4", b"frame 5"])
        buffer.ack(1)  # an older ack changes nothing
        self.assertEqual((buffer.ackedSeq, len(buffer)), (2, 3))
        buffer.ack(5)
        self.assertEqual((buffer.ackedSeq, len(buffer)), (5, 0))
        self.assertEqual(buffer.nextSeq(), 6)

    def test_ackBeyondLastIsClamped(self):
        """An ack of frames never sent acknowledges only those sent."""
        buffer = self.filled(2)
        buffer.ack(99)
        self.assertEqual((buffer.ackedSeq, len(buffer)), (2, 0))
        buffer.add(b"frame 3")
        self.assertEqual(buffer.since(2), [b"frame 3"])

    def test_since(self):
        """since(seq) is every frame after seq, oldest first; [] when the peer has them all."""
        buffer = self.filled(4)
        self.assertEqual(buffer.since(0), [b"frame 1", b"frame 2", b"frame 3", b"frame 4"])
        self.assertEqual(buffer.since(3), [b"frame 4"])
        self.assertEqual(buffer.since(4), [])
        self.assertEqual(ReplayBuffer(10).since(0), [])

    def test_sinceNone(self):
        """since() is None for a seq already forgotten or never sent: the gap cannot be filled."""
        buffer = self.filled(4)
        buffer.ack(2)
        self.assertIsNone(buffer.since(1))
        self.assertIsNone(buffer.since(0))
        self.assertIsNone(buffer.since(5))
        self.assertIsNone(buffer.since(-1))
        self.assertEqual(buffer.since(2), [b"frame 3", b"frame 4"])

    def test_overflow(self):
        """More than limit frames unacknowledged is ReplayOverflow; nothing is numbered for the refused frame."""
        buffer = self.filled(3, limit=3)
        with self.assertRaises(ReplayOverflow):
            buffer.add(b"one too many")
        self.assertEqual((buffer.lastSeq, len(buffer), buffer.nextSeq()), (3, 3, 4))
        buffer.ack(1)
        buffer.add(b"frame 4")
        self.assertEqual(buffer.since(1), [b"frame 2", b"frame 3", b"frame 4"])


# Stream


class Subscriber:
    def __init__(self):
        self.delivered = []

    def deliverStream(self, stream, offset, message):
        self.delivered.append((stream, offset, message))


def decoded(message):
    return json.loads(preparedPayload(message))


class StreamTests(SynchronousTestCase):
    def test_offsets(self):
        """Each emit gets the stream's next offset, from 1, in its frame."""
        stream = Stream("room")
        self.assertEqual(stream.offset, 0)
        self.assertEqual([stream.emit("show", i) for i in range(3)], [1, 2, 3])
        self.assertEqual(stream.offset, 3)
        self.assertEqual([decoded(m) for m in stream.since(0)], [
            {"type": "emit", "stream": "room", "offset": i + 1, "method": "show", "args": [i]}
            for i in range(3)
        ])

    def test_sameMessageForEverySubscriber(self):
        """Every subscriber is handed the very same prepared message, encoded once."""
        stream = Stream("room")
        subscribers = [Subscriber() for _ in range(3)]
        for s in subscribers:
            stream.subscribe(s)
        stream.emit("displayUserMessage", "alice", "héllo <b>")
        [(_, offset, message)] = subscribers[0].delivered
        for s in subscribers:
            self.assertEqual(s.delivered, [(stream, 1, message)])
        self.assertEqual(decoded(message), {"type": "emit", "stream": "room", "offset": 1,
                                            "method": "displayUserMessage",
                                            "args": ["alice", "héllo <b>"]})
        self.assertEqual(list(stream.since(0)), [message])

    def test_subscribeAndUnsubscribe(self):
        """Only subscribers are delivered to; subscribing twice delivers once."""
        stream = Stream("room")
        a, b = Subscriber(), Subscriber()
        stream.subscribe(a)
        stream.subscribe(a)
        stream.emit("show", 1)
        stream.subscribe(b)
        stream.unsubscribe(a)
        stream.unsubscribe(a)
        stream.emit("show", 2)
        self.assertEqual([offset for _, offset, _ in a.delivered], [1])
        self.assertEqual([offset for _, offset, _ in b.delivered], [2])
        self.assertEqual(stream.subscribers(), [b])

    def test_since(self):
        """since(offset) is every frame after offset, oldest first; [] when up to date; None for the future."""
        stream = Stream("room")
        for i in range(5):
            stream.emit("show", i)
        self.assertEqual([decoded(m)["offset"] for m in stream.since(2)], [3, 4, 5])
        self.assertEqual(list(stream.since(5)), [])
        self.assertIsNone(stream.since(6))
        self.assertIsNone(stream.since(-1))

    def test_historyBound(self):
        """Only the last `history` frames are kept: a page further behind cannot be caught up."""
        stream = Stream("room", history=3)
        for i in range(5):
            stream.emit("show", i)
        self.assertEqual([decoded(m)["args"] for m in stream.since(2)], [[2], [3], [4]])
        self.assertIsNone(stream.since(1))
        self.assertIsNone(stream.since(0))


# TokenBucket


class TokenBucketTests(SynchronousTestCase):
    def test_burst(self):
        """A full bucket lets `burst` frames through at once, then none."""
        clock = Clock()
        bucket = TokenBucket(rate=20, burst=40, clock=clock.seconds)
        self.assertEqual([bucket.take() for _ in range(40)], [True] * 40)
        self.assertFalse(bucket.take())
        self.assertFalse(bucket.take())

    def test_refill(self):
        """Tokens come back at `rate` a second, up to `burst`."""
        clock = Clock()
        bucket = TokenBucket(rate=20, burst=40, clock=clock.seconds)
        while bucket.take():
            pass
        clock.advance(0.049)
        self.assertFalse(bucket.take())
        clock.advance(0.001)  # 1/20 s: one token
        self.assertTrue(bucket.take())
        self.assertFalse(bucket.take())
        clock.advance(0.5)  # ten tokens
        self.assertEqual([bucket.take() for _ in range(11)], [True] * 10 + [False])
        clock.advance(3600)  # never more than a burst
        self.assertEqual(sum(bucket.take() for _ in range(100)), 40)

    def test_sustainedRate(self):
        """A page sending at `rate` frames a second is never refused."""
        clock = Clock()
        bucket = TokenBucket(rate=20, burst=2, clock=clock.seconds)
        for _ in range(1000):
            self.assertTrue(bucket.take())
            clock.advance(0.05)

    def test_refusedFramesCostNothing(self):
        """Refused attempts do not dig the bucket deeper."""
        clock = Clock()
        bucket = TokenBucket(rate=10, burst=1, clock=clock.seconds)
        self.assertTrue(bucket.take())
        for _ in range(50):
            self.assertFalse(bucket.take())
        clock.advance(0.1)
        self.assertTrue(bucket.take())


# originAllowed


@pytest.mark.parametrize("origin, host, allowed", [
    (None, "127.0.0.1:8080", ()),                      # not a browser
    (None, None, ()),
    ("http://127.0.0.1:8080", "127.0.0.1:8080", ()),
    ("http://localhost:8080", "LOCALHOST:8080", ()),
    ("HTTP://Chat.Example.COM", "chat.example.com", ()),
    ("http://chat.example.com", "chat.example.com", ()),
    ("http://chat.example.com", "chat.example.com:80", ()),
    ("http://chat.example.com:80", "chat.example.com", ()),
    ("https://chat.example.com", "chat.example.com", ()),
    ("https://chat.example.com", "chat.example.com:443", ()),
    ("https://chat.example.com:443", "chat.example.com", ()),
    ("http://[::1]:8080", "[::1]:8080", ()),
    ("https://chat.example.com", "backend:8080", ("https://chat.example.com",)),
    ("https://chat.example.com", "backend:8080", ("https://CHAT.example.com/",)),
    ("https://other.example.com", "backend:8080", ("https://chat.example.com", "https://other.example.com")),
])
def test_originAllowed(origin, host, allowed):
    assert originAllowed(origin, host, allowed)


@pytest.mark.parametrize("origin, host, allowed", [
    ("http://127.0.0.1:8081", "127.0.0.1:8080", ()),   # another port
    ("http://127.0.0.1", "127.0.0.1:8080", ()),
    ("http://evil.example", "127.0.0.1:8080", ()),     # another host
    ("http://chat.example.com.evil.example", "chat.example.com", ()),
    ("http://chat.example.com@evil.example", "chat.example.com", ()),
    ("https://chat.example.com", "chat.example.com:80", ()),   # https defaults to 443
    ("http://chat.example.com", "chat.example.com:443", ()),
    ("https://evil.example", "backend:8080", ("https://chat.example.com",)),
    ("http://chat.example.com", "backend:8080", ("https://chat.example.com",)),  # scheme differs
    ("http://127.0.0.1:8080", None, ()),               # no Host to compare with
    ("null", "127.0.0.1:8080", ()),                    # sandboxed or file: page
    ("", "127.0.0.1:8080", ()),
    ("not a url", "127.0.0.1:8080", ()),
    ("http://", "127.0.0.1:8080", ()),
    ("file:///etc/passwd", "127.0.0.1:8080", ()),
    ("ws://127.0.0.1:8080", "127.0.0.1:8080", ()),
    ("http://127.0.0.1:99999", "127.0.0.1:8080", ()),  # port out of range
    ("http://127.0.0.1:80abc", "127.0.0.1:8080", ()),
])
def test_originRefused(origin, host, allowed):
    assert not originAllowed(origin, host, allowed)


# LiveSession: grace period and resumption


class Widget(LiveElement):
    def __init__(self):
        self.reasons = []

    @expose
    def echo(self, value):
        return value

    def disconnected(self, reason):
        self.reasons.append(reason)


GRACE = 30.0


class ResumeTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.ended = []
        self.element = Widget()
        self.stream = Stream("room", history=5)
        self.session = LiveSession("sess", self.element, LiveSettings(gracePeriod=GRACE),
                                   self.clock, self.ended.append)
        self.first = FakeConnection()
        self.session.attach(self.first)
        self.element._liveAttach(self.session)
        self.element.subscribe(self.stream)

    def drop(self, connection=None):
        self.session.connectionLost(connection or self.first, Failure(ConnectionLost("dropped")),
                                    intentional=False)

    def test_graceExpiryEndsSession(self):
        """A session whose page dropped ends gracePeriod seconds later: pending calls fail, the element is detached."""
        pending = self.element.callRemote("ask")
        self.drop()
        self.assertIsNone(self.session.connection)
        self.clock.advance(GRACE - 0.001)
        self.assertFalse(self.session.ended)
        self.assertNoResult(pending)
        self.assertEqual(self.element.reasons, [])
        self.clock.advance(0.001)
        self.assertTrue(self.session.ended)
        self.assertEqual(self.ended, [self.session])
        self.failureResultOf(pending, ElementDetached)
        [reason] = self.element.reasons
        self.assertIsInstance(reason.value, ConnectionLost)
        self.assertEqual(self.stream.subscribers(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_intentionalCloseEndsAtOnce(self):
        """A page that left on purpose (or was closed for a violation) ends its session with no grace."""
        pending = self.element.callRemote("ask")
        self.session.connectionLost(self.first, Failure(ConnectionDone()), intentional=True)
        self.assertTrue(self.session.ended)
        self.failureResultOf(pending, ElementDetached)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resumeWithinGrace(self):
        """Resuming within the grace period cancels its end; calls still pending are answered on the new connection."""
        pending = self.element.callRemote("ask")
        self.drop()
        self.clock.advance(GRACE - 1)
        second = FakeConnection()
        self.assertIsNone(self.session.resume(second, 1, {"room": 0}))
        self.assertIs(self.session.connection, second)
        self.clock.advance(GRACE * 10)
        self.assertFalse(self.session.ended)
        self.assertEqual(self.ended, [])
        self.session.receive({"type": "result", "id": 0, "value": "answer"})
        self.assertEqual(self.successResultOf(pending), "answer")
        self.assertEqual(self.element.reasons, [])

    def test_resumeSendsWhatWasMissedOnce(self):
        """Resuming sends 'resumed' (with the last page frame run), then the direct frames and stream frames missed, in order."""
        self.element.callRemote("one")                    # seq 1, seen by the page
        self.stream.emit("show", "a")                     # offset 1, seen
        self.drop()
        self.element.callRemote("two")                    # seq 2, missed
        self.stream.emit("show", "b")                     # offset 2, missed
        self.element.callRemote("three")                  # seq 3, missed
        self.stream.emit("show", "c")                     # offset 3, missed
        self.assertEqual(len(self.first.frames), 2)       # nothing sent while away
        second = FakeConnection()
        self.assertIsNone(self.session.resume(second, 1, {"room": 1}))
        self.assertEqual(second.frames, [
            {"type": "resumed", "session": "sess", "seq": 0},
            {"type": "call", "id": 1, "method": "two", "args": [], "seq": 2},
            {"type": "call", "id": 2, "method": "three", "args": [], "seq": 3},
            {"type": "emit", "stream": "room", "offset": 2, "method": "show", "args": ["b"]},
            {"type": "emit", "stream": "room", "offset": 3, "method": "show", "args": ["c"]},
        ])
        self.element.callRemote("four")
        self.assertEqual(second.frames[-1]["seq"], 4)
        # What the page said it had is taken as acknowledged: it is forgotten.
        self.drop(second)
        self.assertIsNotNone(self.session.resume(FakeConnection(), 0, {"room": 1}))

    def test_resumedCarriesLastPageFrame(self):
        """'resumed' tells the page the last of its numbered frames the session received, and results it missed follow."""
        for seq in (1, 2, 3):
            self.session.receive({"type": "call", "id": seq, "method": "echo", "args": [seq],
                                  "seq": seq})
        self.session.receive({"type": "call", "id": 9, "method": "echo", "args": [9]})  # unnumbered
        self.assertEqual([f["seq"] for f in self.first.frames], [1, 2, 3, 4])
        self.drop()
        second = FakeConnection()
        self.assertIsNone(self.session.resume(second, 2, {}))
        self.assertEqual(second.frames, [
            {"type": "resumed", "session": "sess", "seq": 3},
            {"type": "result", "id": 3, "value": 3, "seq": 3},
            {"type": "result", "id": 9, "value": 9, "seq": 4},
        ])
        # The page sends again what it sent after the drop; seq 3 is not run twice.
        self.session.receive({"type": "call", "id": 3, "method": "echo", "args": [3], "seq": 3})
        self.assertEqual(len(second.frames), 3)

    def test_oldConnectionReplaced(self):
        """A resume while the old connection is still attached closes the old one, whose loss then changes nothing."""
        second = FakeConnection()
        self.assertIsNone(self.session.resume(second, 0, {}))
        self.assertEqual(self.first.closed, "replaced")
        self.drop(self.first)  # the old connection's close arrives late
        self.assertIs(self.session.connection, second)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.session.ended)

    def test_missingStreamOffsetMeansFromSubscription(self):
        """A resume that names no offset for a stream gets that stream from where the page subscribed."""
        self.drop()
        self.stream.emit("show", "x")
        second = FakeConnection()
        self.assertIsNone(self.session.resume(second, 0, {}))
        self.assertEqual([f["type"] for f in second.frames], ["resumed", "emit"])

    def test_seqTooOldRefused(self):
        """A resume from a frame the session has already forgotten (acknowledged) is refused, with a reason."""
        for method in ("a", "b", "c"):
            self.element.callRemote(method)
        self.session.receive({"type": "ack", "seq": 2})
        self.drop()
        second = FakeConnection()
        why = self.session.resume(second, 1, {"room": 0})
        self.assertIn("frame 1", why)
        self.assertEqual(second.frames, [])
        self.assertIsNone(self.session.connection)

    def test_seqInFutureRefused(self):
        """A resume claiming frames never sent is refused."""
        self.element.callRemote("a")
        self.drop()
        why = self.session.resume(FakeConnection(), 5, {"room": 0})
        self.assertIn("frame 5", why)

    def test_streamOffsetTooOldRefused(self):
        """A resume from a stream offset older than the stream keeps is refused, naming the stream."""
        self.drop()
        for i in range(6):  # history is 5
            self.stream.emit("show", i)
        second = FakeConnection()
        why = self.session.resume(second, 0, {"room": 0})
        self.assertIn("room", why)
        self.assertEqual(second.frames, [])
        self.assertIsNone(self.session.resume(FakeConnection(), 0, {"room": 1}))

    def test_overflowEndsSession(self):
        """A page that never acknowledges is expelled (4008) once maxReplayFrames frames wait, and its session ends."""
        session = LiveSession("s2", Widget(), LiveSettings(maxReplayFrames=3), self.clock,
                              self.ended.append)
        connection = FakeConnection()
        session.attach(connection)
        session.element._liveAttach(session)
        calls = [session.element.callRemote("m") for _ in range(4)]
        self.assertEqual(connection.closed, ("expelled", "too many frames unacknowledged"))
        self.assertTrue(session.ended)
        self.assertEqual(self.ended, [session])
        for d in calls:
            self.failureResultOf(d, ElementDetached)
        self.assertEqual(len(connection.frames), 3)


    def test_acknowledgedFramesAreNotKept(self):
        """Frames the page acknowledged are dropped, so a page that keeps acknowledging never overflows."""
        session = LiveSession("s3", Widget(), LiveSettings(maxReplayFrames=3), self.clock,
                              self.ended.append)
        connection = FakeConnection()
        session.attach(connection)
        session.element._liveAttach(session)
        for i in range(1, 11):
            session.element.callRemote("m")
            session.receive({"type": "ack", "seq": i})
        self.assertFalse(session.ended)
        self.assertEqual([f["seq"] for f in connection.frames], list(range(1, 11)))
