"""
L{ReplayBuffer}: what one side sent and the other has not yet acknowledged.
"""

from typing import Any, Callable


class ReplayOverflow(Exception):
    """
    More frames wait for acknowledgement than the buffer may hold.
    """


#: The frames of every buffer that has none waiting (never added to: a
#: buffer makes its own list for its first frame).
_NONE_WAITING: list[bytes] = []


class ReplayBuffer:
    """
    Numbers outgoing frames 1, 2, 3... and keeps each, encoded, until the
    peer acknowledges it, so that after a reconnection everything the peer
    missed can be sent again, and nothing else.

    @ivar lastSeq: the number of the latest frame.
    @ivar ackedSeq: the peer has everything up to and including this.
    """

    # One per page: no instance dictionary, and a list rather than a deque,
    # which allocates a block of 64 entries however few it holds; and while
    # everything is acknowledged (an idle page), no list at all.
    __slots__ = ("limit", "lastSeq", "ackedSeq", "_frames")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lastSeq = 0
        self.ackedSeq = 0
        self._frames: list[bytes] = _NONE_WAITING

    def __len__(self) -> int:
        return len(self._frames)

    def startAfter(self, seq: int) -> None:
        """
        Number the next frame C{seq + 1} (an empty buffer taking over from
        one the peer has everything of, up to C{seq}).
        """
        assert not self._frames, "only an empty buffer can be renumbered"
        self.lastSeq = self.ackedSeq = seq

    def nextSeq(self) -> int:
        """
        The number the next frame will get.
        """
        return self.lastSeq + 1

    def add(self, payload: bytes) -> None:
        """
        Keep C{payload}, encoded with number L{nextSeq}.

        @raise ReplayOverflow: if the buffer is full.
        """
        if len(self._frames) >= self.limit:
            raise ReplayOverflow(
                f"{len(self._frames)} frames are waiting for acknowledgement"
            )
        self.lastSeq += 1
        if self._frames is _NONE_WAITING:
            self._frames = [payload]
        else:
            self._frames.append(payload)

    def ack(self, seq: int) -> None:
        """
        The peer has every frame up to C{seq}: forget them.
        """
        seq = min(seq, self.lastSeq)
        if seq > self.ackedSeq:
            if seq == self.lastSeq:
                self._frames = _NONE_WAITING
            else:
                del self._frames[:seq - self.ackedSeq]
            self.ackedSeq = seq

    def since(self, seq: int) -> list[bytes] | None:
        """
        The frames after C{seq}, oldest first; L{None} if C{seq} is not one
        the peer can have seen (forgotten already, or never sent).
        """
        if not self.ackedSeq <= seq <= self.lastSeq:
            return None
        return self._frames[seq - self.ackedSeq:]


#: Acknowledge the peer's numbered frames after this many, or this many seconds.
ACK_EVERY = 16
ACK_DELAY = 0.25


class AckSchedule:
    """
    When to acknowledge the peer's numbered frames: after L{ACK_EVERY} of
    them, or L{ACK_DELAY} seconds after the first one not yet acknowledged,
    whichever comes first; so a busy peer gets one ack per batch and a quiet
    one is not kept waiting.  C{acknowledge()} sends the ack.
    """

    __slots__ = ("reactor", "acknowledge", "_pending", "_timer")

    def __init__(self, reactor: Any, acknowledge: Callable[[], None]) -> None:
        self.reactor = reactor
        self.acknowledge = acknowledge
        self._pending = 0
        self._timer: Any = None

    def received(self) -> None:
        """
        One more frame to acknowledge.
        """
        self._pending += 1
        if self._pending >= ACK_EVERY:
            self.flush()
        elif self._timer is None:
            self._timer = self.reactor.callLater(ACK_DELAY, self.flush)

    def flush(self) -> None:
        """
        Acknowledge now.
        """
        self.cancel()
        self.acknowledge()

    def cancel(self) -> None:
        """
        Forget what was pending (the connection is gone).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._pending = 0
