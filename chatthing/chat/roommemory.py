"""
What the rooms of a L{chatthing.chat.chatroom.ChatRoom} may hold, in bytes: L{RoomMemory} (the budgets,
and the count of what all the rooms hold together), L{RoomBytes} (what one
room holds) and L{History} (a room's last messages, bounded in count and
in bytes).

Without budgets each room kept its last 1,000 stream frames and 50
messages until a 1,001st room pushed it out: 11.5 MiB a room of big
messages after everyone had left, 11 GiB for 1,000 rooms.  Now a room
keeps at most L{RoomMemory.replayBytes} of frames for pages that resume,
and drops them all once nobody is left who could resume (no page attached,
no session waiting in its grace period); its history, at most
L{RoomMemory.historyBytes}, stays for the next newcomer.  All rooms
together keep at most L{RoomMemory.totalBytes}: past that the chat room lets
go first of empty rooms, then of the oldest frames of the fullest ones
(L{chatthing.chat.chatroom.ChatRoom}).  Bytes are those of the frames as encoded.
"""

import json
from typing import Callable, Iterator

from ..live import BoundedLog, Stream
from .said import Said

#: Bytes of stream frames one room keeps for pages that resume (about 40
#: seconds of ten 1 KiB messages a second).
REPLAY_BYTES = 384 * 1024

#: Bytes of history (its last messages) one room keeps for newcomers.
HISTORY_BYTES = 128 * 1024

#: Bytes all the rooms of a chat room keep together, frames and histories.
TOTAL_BYTES = 128 * 1024 * 1024


class RoomMemory:
    """
    The budgets of a chat room's rooms, and how many bytes they hold now.

    @ivar replayBytes: stream frames one room keeps for pages that resume.
    @ivar historyBytes: history one room keeps.
    @ivar totalBytes: what all the rooms keep together.
    @ivar held: what all the rooms hold now.
    @ivar overBudget: called when L{held} goes past L{totalBytes} (the
        chat room, which knows the rooms, trims them).
    """

    def __init__(self, replayBytes: int = REPLAY_BYTES, historyBytes: int = HISTORY_BYTES,
                 totalBytes: int = TOTAL_BYTES) -> None:
        self.replayBytes = replayBytes
        self.historyBytes = historyBytes
        self.totalBytes = totalBytes
        self.held = 0
        self.overBudget: Callable[[], None] = lambda: None
        self._trimming = False

    def __repr__(self) -> str:
        return f"<RoomMemory {self.held} of {self.totalBytes} bytes>"

    def changed(self, delta: int) -> None:
        """
        A room holds C{delta} bytes more (or fewer): over the total, trim.
        """
        self.held += delta
        if self.held > self.totalBytes and not self._trimming:
            self._trimming = True
            try:
                self.overBudget()
            finally:
                self._trimming = False


def entryBytes(said: Said) -> int:
    """
    The size of a history entry as it is sent (L{Said.entry}): its JSON in
    UTF-8.
    """
    return len(json.dumps(said.entry(), ensure_ascii=False, separators=(",", ":"))
               .encode("utf-8", "surrogatepass"))


class History:
    """
    A room's last messages, oldest first: at most C{count} of them, and at
    most C{maxBytes} of their encoded entries (the oldest go first), in a
    L{BoundedLog} of each with its size, worked out once.

    @ivar heldBytes: the bytes of the entries kept.
    """

    def __init__(self, count: int, maxBytes: int) -> None:
        self._log: BoundedLog[tuple[Said, int]] = BoundedLog(_storedSize, count, maxBytes)

    def __iter__(self) -> Iterator[Said]:
        return (entry for entry, _ in self._log)

    def __len__(self) -> int:
        return len(self._log)

    def __getitem__(self, index: int) -> Said:
        return self._log[index][0]

    @property
    def count(self) -> int:
        return self._log.maxCount

    @property
    def heldBytes(self) -> int:
        return self._log.heldBytes

    @property
    def maxBytes(self) -> int:
        return self._log.maxBytes or 0

    @maxBytes.setter
    def maxBytes(self, maxBytes: int) -> None:
        self._log.maxBytes = maxBytes

    def append(self, entry: Said) -> None:
        self._log.append((entry, entryBytes(entry)))

    def trimBytes(self, maxBytes: int) -> int:
        """
        Forget the oldest entries until at most C{maxBytes} are kept.

        @return: how many bytes were let go.
        """
        before = self.heldBytes
        self._log.trim(maxBytes)
        return before - self.heldBytes


def _storedSize(entry: tuple[Said, int]) -> int:
    return entry[1]


class RoomBytes:
    """
    What one room holds: the frames its stream (and the stream's fallback)
    keeps for replay, and its L{History}; it keeps the chat room's
    L{RoomMemory} told of every change.
    """

    def __init__(self, stream: "Stream", history: History, memory: RoomMemory) -> None:
        self.stream = stream
        self.history = history
        self.memory = memory
        self.told = 0
        stream.limitBytes(memory.replayBytes)

    def held(self) -> int:
        return self.replay() + self.history.heldBytes

    def replay(self) -> int:
        fallback = self.stream.fallback
        return self.stream.heldBytes + (fallback.heldBytes if fallback is not None else 0)

    def account(self, dropReplay: bool = False) -> None:
        """
        Tell the chat room's L{RoomMemory} how much more (or less) is held,
        after dropping every frame kept for replay if C{dropReplay} (nobody
        is left in the room who could resume).
        """
        if dropReplay:
            self.stream.trim()
        held = self.held()
        delta, self.told = held - self.told, held
        if delta:
            self.memory.changed(delta)

    def trimReplay(self, maxBytes: int) -> None:
        """
        Keep at most about C{maxBytes} of frames for replay (all the rooms'
        budget is spent).
        """
        self.stream.trimBytes(maxBytes)
        if self.stream.fallback is not None:
            self.stream.fallback.trimBytes(maxBytes)
        self.account()

    def trimHistory(self, maxBytes: int) -> None:
        self.history.trimBytes(maxBytes)
        self.account()

    def forget(self) -> None:
        """
        The room is closed: it holds nothing any more.
        """
        self.memory.changed(-self.told)
        self.told = 0
