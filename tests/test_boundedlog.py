"""
L{chatthing.live.BoundedLog}: the one loop that keeps a stream's replay
frames and a room's history within their count and their bytes; and the
two kept with it as they were (no sockets).
"""

from twisted.trial.unittest import SynchronousTestCase

from chatthing.chat import Said
from chatthing.chat.roommemory import History, entryBytes
from chatthing.live import BoundedLog, Stream


def sized(entry: str) -> int:
    return len(entry)


class BoundedLogTests(SynchronousTestCase):
    def test_countBound(self):
        """Past its count the log forgets its oldest entries, one for each that comes, and keeps the order."""
        log = BoundedLog(sized, 3)
        forgotten = [log.append(word) for word in ["a", "bb", "ccc", "dddd", "e"]]
        self.assertEqual(list(log), ["ccc", "dddd", "e"])
        self.assertEqual(forgotten, [None, None, None, "a", "bb"])
        self.assertEqual((len(log), log.heldBytes, log[0], log[-1]), (3, 8, "ccc", "e"))

    def test_byteBound(self):
        """Past its bytes the log forgets its oldest entries until what it keeps fits; the newest stay, in order."""
        log = BoundedLog(sized, 100, maxBytes=10)
        for word in ["aaaa", "bbb", "cc", "d"]:
            self.assertIsNone(log.append(word))
        self.assertEqual(log.heldBytes, 10)
        self.assertEqual(log.append("eeeeee"), "bbb")
        self.assertEqual((list(log), log.heldBytes), (["cc", "d", "eeeeee"], 9))

    def test_entryBiggerThanTheWholeBound(self):
        """An entry bigger than the whole byte bound is let go at once with every older one; the log goes on."""
        log = BoundedLog(sized, 100, maxBytes=10)
        log.append("aa")
        log.append("bb")
        self.assertEqual(log.append("x" * 11), "x" * 11)
        self.assertEqual((list(log), log.heldBytes), ([], 0))
        self.assertIsNone(log.append("cc"))
        self.assertEqual((list(log), log.heldBytes), (["cc"], 2))

    def test_trim(self):
        """trim() forgets the oldest down to a smaller budget (0: all), says the newest it forgot, and keeps maxBytes."""
        log = BoundedLog(sized, 100, maxBytes=20)
        for word in ["aaaa", "bbbb", "cccc", "dddd"]:
            log.append(word)
        self.assertIsNone(log.trim(16))
        self.assertEqual(log.trim(9), "bbbb")
        self.assertEqual((list(log), log.heldBytes, log.maxBytes), (["cccc", "dddd"], 8, 20))
        self.assertEqual(log.trim(0), "dddd")
        self.assertEqual((list(log), log.heldBytes, len(log)), ([], 0, 0))
        self.assertIsNone(log.trim(0))

    def test_newBoundsHoldFromTheNextChange(self):
        """A smaller maxBytes or maxCount holds from the next append, which may forget several entries at once."""
        log = BoundedLog(sized, 100)
        for word in ["aaaa", "bbbb", "cccc", "dddd"]:
            log.append(word)
        log.maxBytes, log.maxCount = 6, 2
        self.assertEqual(log.append("ee"), "cccc")
        self.assertEqual((list(log), log.heldBytes), (["dddd", "ee"], 6))

    def test_heldBytesIsTheSumOfWhatIsKept(self):
        """However entries come and go, heldBytes is the sum of the sizes of those kept, and never above the bound."""
        log = BoundedLog(sized, 7, maxBytes=40)
        for i in range(200):
            log.append("z" * (i * 7919 % 23))
            self.assertEqual(log.heldBytes, sum(map(len, log)))
            self.assertLessEqual(log.heldBytes, 40)
            self.assertLessEqual(len(log), 7)


class KeptAsBeforeTests(SynchronousTestCase):
    """
    The stream's frames and the room's history, now kept in a BoundedLog,
    bounded and trimmed as before.
    """

    def test_streamForgetsByCountThenBytes(self):
        """A stream keeps its last `history` frames within its bytes; a page behind what it forgot cannot resume."""
        stream = Stream("room", history=4)
        for i in range(6):
            stream.emit("said", i)
        self.assertIsNone(stream.since(1))
        self.assertEqual(len(stream.since(2)), 4)
        stream.limitBytes(stream.heldBytes // 2)
        kept = stream.since(stream.offset - 2)
        self.assertEqual(len(kept), 2)
        self.assertEqual(stream.heldBytes, sum(len(m.payloadHybi) for m in kept))
        self.assertIsNone(stream.since(stream.offset - 3))

    def test_frameBiggerThanTheStreamsBytes(self):
        """A frame bigger than a stream's whole byte budget is sent, not kept: nobody can resume from before it."""
        stream = Stream("room")
        stream.limitBytes(100)
        stream.emit("said", "small")
        stream.emit("said", "x" * 200)
        self.assertEqual((stream.heldBytes, stream.since(2)), (0, []))
        self.assertIsNone(stream.since(1))
        stream.emit("said", "after")
        self.assertEqual(len(stream.since(2)), 1)

    def test_restoredStreamKeepsItsCount(self):
        """A stream restored from a bigger one's saved frames keeps only its own `history` of them, and goes on so."""
        saved = Stream("room", history=10)
        for i in range(10):
            saved.emit("said", i)
        restored = Stream("room", history=3)
        restored.restoreState(saved.savedState())
        self.assertEqual((len(restored.since(7)), restored.since(6)), (3, None))
        restored.emit("said", 10)
        self.assertEqual((len(restored.since(8)), restored.since(7)), (3, None))
        self.assertEqual(restored.heldBytes, sum(len(m.payloadHybi) for m in restored.since(8)))

    def test_historyKeepsItsBounds(self):
        """A room's history keeps its count, its bytes (settable, as the chat room sets them) and its order."""
        history = History(3, 10_000)
        for i in range(5):
            history.append(Said("message", "ann", str(i), 0))
        self.assertEqual([said.text for said in history], ["2", "3", "4"])
        history.maxBytes = 2 * entryBytes(history[-1])
        history.append(Said("message", "bob", "5", 0))
        self.assertEqual([said.text for said in history], ["4", "5"])
        self.assertEqual(history.heldBytes, sum(entryBytes(said) for said in history))
        held = history.heldBytes
        self.assertEqual((history.trimBytes(0), len(history), history.heldBytes), (held, 0, 0))
