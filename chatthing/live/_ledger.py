"""
L{SessionLedger}: a client's account of one session, so that a reconnection
loses nothing and runs nothing twice (docs/protocol.md, "Delivery").
"""

import json
from typing import Any

#: Frame types that are numbered by their sender but never run twice by
#: number: acknowledgements and the server's answer to a resume carry the
#: other side's numbers.
_NOT_RUN_BY_NUMBER = frozenset({"ack", "resumed", "welcome"})


class SessionLedger:
    """
    What a client keeps of its session with a live server: the frames it
    numbered and the server has not acknowledged, the calls still waiting
    for an answer, and how far it has received the server's numbered frames
    and each stream.  Both Python clients (L{chatthing.live.client.LiveClient}
    and L{chatthing.live.testing.LiveTestClient}) keep one; the browser's
    runtime (C{js/live/socket.js}) does the same.

    @ivar session: the session's id, once welcomed.
    @ivar receivedSeq: the server's numbered frames received, up to this.
    @ivar offsets: for each stream, the offset of the latest frame received.
    """

    def __init__(self) -> None:
        self.session: str | None = None
        self.receivedSeq = 0
        self.offsets: dict[str, int] = {}
        self._sentSeq = 0
        self._outbox: list[tuple[int, bytes]] = []
        self._calls: dict[Any, tuple[int, bytes]] = {}

    def number(self, frame: dict[str, Any]) -> bytes:
        """
        Number C{frame}, keep it until the server acknowledges it, and (a
        call) until it is answered; its encoded bytes, to send.
        """
        self._sentSeq += 1
        payload = json.dumps({**frame, "seq": self._sentSeq}).encode("utf-8")
        self._outbox.append((self._sentSeq, payload))
        if frame.get("type") == "call":
            self._calls[frame.get("id")] = (self._sentSeq, payload)
        return payload

    def kept(self) -> list[bytes]:
        """
        The numbered frames not yet acknowledged, oldest first.
        """
        return [payload for _, payload in self._outbox]

    def acknowledged(self, seq: int) -> None:
        """
        The server has every frame up to C{seq}.
        """
        self._outbox = [(s, payload) for s, payload in self._outbox if s > seq]

    def answered(self, ident: Any) -> None:
        """
        The call C{ident} has its answer.
        """
        self._calls.pop(ident, None)

    def forgetSent(self) -> None:
        """
        Drop what waits for the server (its session is gone).
        """
        self._outbox = []
        self._calls = {}

    def accept(self, frame: dict[str, Any]) -> bool:
        """
        Whether C{frame} from the server is new, and so to be run: a stream's
        by its offset, a numbered one by its C{seq} (then to be
        acknowledged), any other always.  A frame sent again after a
        reconnection is not new.
        """
        kind = frame.get("type")
        if kind in ("result", "error"):
            self.answered(frame.get("id"))
        if kind == "emit" and "offset" in frame:
            stream, offset = frame["stream"], frame["offset"]
            if offset <= self.offsets.get(stream, 0):
                return False
            self.offsets[stream] = offset
        elif "seq" in frame and kind not in _NOT_RUN_BY_NUMBER:
            if frame["seq"] <= self.receivedSeq:
                return False
            self.receivedSeq = frame["seq"]
        return True

    def welcomed(self, session: str) -> None:
        """
        A new session C{session} has begun: nothing of the server's is
        received yet.
        """
        self.session = session
        self.receivedSeq = 0
        self.offsets = {}

    def resumeRequest(self) -> dict[str, Any]:
        """
        The C{resume} field of a C{hello} that carries on this session.
        """
        return {"session": self.session, "seq": self.receivedSeq, "streams": dict(self.offsets)}

    def resumed(self, frame: dict[str, Any]) -> list[bytes]:
        """
        The server resumed the session (C{frame}, its C{resumed}): what to
        send again, in order, before anything new.  A session that moved to
        another server (C{"rerun"}) lost the answers to the calls still
        waiting, so those go again too; the server runs each number once.
        """
        self.acknowledged(frame["seq"])
        again = dict(self._outbox)
        if frame.get("rerun") is True:
            again.update(self._calls.values())
        return [again[seq] for seq in sorted(again)]
