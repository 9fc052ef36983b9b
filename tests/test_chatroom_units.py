"""
Unit tests of the chat room and its elements, with in-memory sessions and
fake connections instead of sockets.
"""

from test_live_units import FakeConnection
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatthing.chatterbox import (
    MAX_MESSAGE_LENGTH,
    AlreadyLoggedIn,
    ChatRoom,
    ChatterElement,
    InvalidMessage,
    InvalidUsername,
    NotLoggedIn,
    Room,
    UsernameTaken,
    chat,
)
from chatthing.live import LiveSettings
from chatthing.live._session import LiveSession

#: Calls that date the next line and update who is online, not lines.
BOOKKEEPING = ("messageTime", "updatePresence", "presenceChanged")


class Page:
    """
    One page's side of a session: it records the calls the element makes,
    directly or through the room's stream, and answers direct ones at once.
    """

    def __init__(self, room, clock=None):
        self.element = room.makeChatter()
        self.clock = clock or Clock()
        self.session = LiveSession("s", self.element, LiveSettings(), self.clock, lambda s: None)
        self.connection = FakeConnection()
        self.session.attach(self.connection)
        self.element._liveAttach(self.session)
        self.seen = 0

    @property
    def shown(self):
        """
        The lines shown: calls and stream calls, less the ones that only
        keep the page's clock and presence list up to date.
        """
        return [call for call in self.received if call[0] not in BOOKKEEPING]

    @property
    def received(self):
        """
        Every call made to the page, directly or through a stream.
        """
        self._answer()
        return [(f["method"], *f["args"]) for f in self.connection.frames
                if f["type"] in ("call", "emit")]

    def _answer(self):
        for frame in self.connection.frames[self.seen:]:
            if frame["type"] == "call":
                self.session.receive({"type": "result", "id": frame["id"], "value": None})
        self.seen = len(self.connection.frames)

    def leave(self):
        self.session.end(Failure(ConnectionDone()))


class RoomTests(SynchronousTestCase):
    def setUp(self):
        # A stopped clock: the room sends its time once, before the first line.
        # Presence changes are published as they come (no interval; the
        # batching has its own tests, in test_presence_batch.py).
        self.room = Room(clock=lambda: 1_700_000_000.0, presenceInterval=0)

    def test_moduleLevelFactory(self):
        """chat is the tutorial's factory: a bound makeChatter of the module-level ChatRoom that holds every room."""
        self.assertIsInstance(chat.__self__, ChatRoom)
        self.assertEqual(chat.__func__, ChatRoom.makeChatter)
        self.assertIsInstance(chat.__self__.rooms["lobby"], Room)

    def test_makeChatterTracks(self):
        """Each made chatter is tracked by the room until its page goes away."""
        a, b = Page(self.room), Page(self.room)
        self.assertEqual(self.room.chatters, [a.element, b.element])
        a.leave()
        self.assertEqual(self.room.chatters, [b.element])

    def test_loginAnnounces(self):
        """Logging in announces the user to every page, the new one included."""
        a, b = Page(self.room), Page(self.room)
        self.assertEqual(self.successResultOf(b.element.setUsername("  bob ")), "bob")
        for page in (a, b):
            self.assertEqual(page.shown, [("displayMessage", " * user bob has joined the room")])
        self.assertEqual(self.room.online(), ["bob"])

    def test_namesUniqueCaseInsensitively(self):
        """A name differing only in case or surrounding spaces is taken."""
        Page(self.room).element.setUsername("Alice")
        other = Page(self.room).element
        for name in ["alice", " ALICE ", "Alice"]:
            self.failureResultOf(other.setUsername(name), UsernameTaken)
        self.assertEqual(self.successResultOf(other.setUsername("alice2")), "alice2")

    def test_nameFreedOnLeave(self):
        """A name is free again once its owner's page goes away."""
        first = Page(self.room)
        first.element.setUsername("alice")
        first.leave()
        self.assertEqual(self.successResultOf(Page(self.room).element.setUsername("ALICE")), "ALICE")

    def test_invalidNames(self):
        """Empty, blank, over-long and control-character names are refused."""
        element = Page(self.room).element
        for name in ["", "   ", "x" * 33, "a\x00b", "a\nb", "tab\there", "\x1b[31mred"]:
            self.assertRaises(InvalidUsername, element.setUsername, name)
        self.assertEqual(self.successResultOf(element.setUsername("x" * 32)), "x" * 32)

    def test_loginTwice(self):
        """A page cannot log in a second time."""
        element = Page(self.room).element
        element.setUsername("alice")
        self.assertRaises(AlreadyLoggedIn, element.setUsername, "bob")

    def test_everyoneHearsEveryone(self):
        """A message reaches every page with its speaker's name."""
        a, b = Page(self.room), Page(self.room)
        a.element.setUsername("alice")
        a.element.say("hi <b>all</b>")
        for page in (a, b):
            self.assertEqual(page.shown[-1], ("displayUserMessage", "alice", "hi <b>all</b>"))

    def test_sayNeedsLogin(self):
        """Speaking before logging in is refused."""
        self.assertRaises(NotLoggedIn, Page(self.room).element.say, "hello")

    def test_badMessages(self):
        """Empty, blank and over-long messages are refused; the limit itself is fine."""
        page = Page(self.room)
        page.element.setUsername("alice")
        for text in ["", "  \n\t ", "x" * (MAX_MESSAGE_LENGTH + 1)]:
            self.assertRaises(InvalidMessage, page.element.say, text)
        page.element.say("x" * MAX_MESSAGE_LENGTH)
        self.assertEqual(page.shown[-1][2], "x" * MAX_MESSAGE_LENGTH)

    def test_leaveAnnounced(self):
        """A logged-in user's leaving is announced; an anonymous page's is not."""
        a, b, anonymous = Page(self.room), Page(self.room), Page(self.room)
        a.element.setUsername("alice")
        anonymous.leave()
        self.assertNotIn("left", str(b.shown))
        a.leave()
        self.assertEqual(b.shown[-1], ("displayMessage", " * user alice has left the room"))
        self.assertEqual(self.room.online(), [])

    def test_wallReachesEveryPage(self):
        """wall() reaches every page, logged in or not, and counts them."""
        pages = [Page(self.room) for _ in range(3)]
        self.assertEqual(self.room.wall("restarting"), 3)
        for page in pages:
            self.assertEqual(page.shown[-1], ("displayMessage", "restarting"))

    def test_brokenRecipientDoesNotBreakFanOut(self):
        """A page whose delivery fails is skipped; the others still get it, and the speaker's say() succeeds."""
        a, broken, b = Page(self.room), Page(self.room), Page(self.room)

        def fail(message):
            raise ConnectionLost("the transport broke")

        broken.connection.sendPrepared = fail
        ghost = ChatterElement(self.room)   # tracked but never attached
        self.room.chatters.append(ghost)
        self.assertEqual(self.room.wall("hello"), 4)
        for page in (a, b):
            self.assertEqual(page.shown[-1], ("displayMessage", "hello"))
        a.element.setUsername("alice")
        a.element.say("still here")
        for page in (a, b):
            self.assertEqual(page.shown[-1], ("displayUserMessage", "alice", "still here"))
        # Each of the room's frames (the time, hello, the join and its
        # presence, the say) failed once for the broken page, and was logged.
        self.assertEqual(len(self.flushLoggedErrors(ConnectionLost)), self.room.stream.offset)
        self.assertEqual(self.room.stream.offset, 5)

    def test_sameBytesForEveryPage(self):
        """The room encodes each message once: every page is sent the same prepared frame, numbered by the stream."""
        pages = [Page(self.room) for _ in range(3)]
        pages[0].element.setUsername("alice")
        pages[0].element.say("hi")
        # On the room's stream the time, the join, the presence change, the
        # message (the page's own presence list is its own, numbered frame).
        for page in pages:
            self.assertEqual(len(page.connection.prepared), 4)
            self.assertEqual(page.connection.frames[-1], {
                "type": "emit", "stream": "room", "offset": 4,
                "method": "displayUserMessage", "args": ["alice", "hi"]})
        for i in range(4):
            self.assertEqual(len({id(page.connection.prepared[i]) for page in pages}), 1)

    def test_awayPageKeepsItsPlace(self):
        """A page that dropped is still in the room, and gets what it missed when it resumes."""
        a, b = Page(self.room), Page(self.room)
        a.element.setUsername("alice")
        b.element.setUsername("bob")
        b.session.connectionLost(b.connection, Failure(ConnectionLost()), intentional=False)
        a.element.say("while you were away")
        self.room.wall("an alert")
        self.assertEqual(self.room.online(), ["alice", "bob"])
        self.assertEqual(self.room.chatters, [a.element, b.element])
        back = FakeConnection()
        offsets = {f["stream"]: f["offset"] for f in b.connection.frames if "offset" in f}
        seen = max(f.get("seq", 0) for f in b.connection.frames)
        self.assertIsNone(b.session.resume(back, seen, offsets))
        self.assertEqual([(f["type"], f.get("args")) for f in back.frames], [
            ("resumed", None),
            ("emit", ["alice", "while you were away"]),
            ("emit", ["an alert"]),
        ])
        self.assertNotIn("left", str(a.shown))

    def test_graceExpiryIsALeave(self):
        """A dropped page that does not come back within the grace period leaves the room, announced."""
        clock = Clock()
        a, b = Page(self.room, clock), Page(self.room, clock)
        a.element.setUsername("alice")
        b.session.connectionLost(b.connection, Failure(ConnectionLost()), intentional=False)
        a.session.connectionLost(a.connection, Failure(ConnectionLost()), intentional=False)
        watcher = Page(self.room)
        clock.advance(LiveSettings().gracePeriod - 1)
        self.assertEqual(self.room.online(), ["alice"])
        clock.advance(1)
        self.assertEqual(self.room.online(), [])
        self.assertEqual(self.room.chatters, [watcher.element])
        self.assertEqual(watcher.shown, [("displayMessage", " * user alice has left the room")])
