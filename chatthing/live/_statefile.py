"""
A deploy of a process that runs alone, without logging anyone out: when it
stops (SIGTERM, after the drain has told its pages and closed them with
1012) L{StateKeeper} saves its sessions and its application's state
(L{IAppState}: for the chat, names, rooms and their history) to a
L{StateFile}; the next process loads it when it starts, makes each
session's element again from its L{sessionState
<chatthing.live.LiveElement.sessionState>} (as a process taking a session
over from a dead one does), and the pages that reconnect resume: same
session, nothing missed, nothing twice.

Without a state file those pages would get a new session ("expired") and
start over.  The file is read once: it is renamed C{PATH.loaded} as it is
loaded, so a second start does not resume the same sessions twice.  A file
that is missing, too big, corrupt, from another version or too old is said
in one log line, and the process starts as it would without it.
"""

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import Interface

from ._logsafe import cut
from ._sessionstore import SessionRecord

#: The format of the file; a file of another version is not loaded.
STATE_VERSION = 1

#: The largest state file written or read by default (C{--state-file-max-bytes}).
MAX_STATE_BYTES = 256 * 1024 * 1024


class IAppState(Interface):
    """
    What an application carries across a restart besides its sessions'
    elements (which L{sessionState <chatthing.live.LiveElement.sessionState>}
    carries): for the chat, its rooms, their history and who is in them.
    """

    def saveState() -> Any:
        """
        The application's state, as JSON data, while it stops.
        """

    def loadState(state: Any) -> None:
        """
        Take up C{state} (what a predecessor's L{saveState} gave), before
        the sessions are restored and before any page connects.

        @raise ValueError: if C{state} cannot be used (nothing is taken up).
        """


class StateUnusable(Exception):
    """
    A state file cannot be loaded: missing, too big, corrupt, another
    version, too old.
    """


class StateFile:
    """
    One file holding a stopping process's state as JSON: written whole
    (to a temporary file, flushed, then renamed over C{path}, so a crash
    leaves the old file or the new one, never half of one), and bounded in
    size both ways.
    """

    log = Logger()

    def __init__(self, path: str, maxBytes: int = MAX_STATE_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.maxBytes = maxBytes
        self.clock = clock

    def write(self, parts: dict[str, Any]) -> int:
        """
        Save C{parts} (JSON data by name).

        @return: the bytes written.
        @raise StateUnusable: it would be bigger than C{maxBytes} (nothing
            is written).
        """
        data = json.dumps({"version": STATE_VERSION, "savedAt": self.clock(), **parts},
                          separators=(",", ":")).encode("utf-8")
        if len(data) > self.maxBytes:
            raise StateUnusable(f"the state is {len(data)} bytes, more than the {self.maxBytes} allowed")
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        # It holds the session ids, which resume sessions: for the server's user only.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        return len(data)

    def read(self) -> dict[str, Any]:
        """
        The state saved, read once: the file is renamed C{PATH.loaded} (or
        C{PATH.rejected} if it cannot be used), so that the next start does
        not load it again.

        @raise StateUnusable: saying why it cannot be used.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise StateUnusable("there is no such file") from None
        except OSError as e:
            raise StateUnusable(f"it cannot be read: {e.strerror}") from None
        try:
            if size > self.maxBytes:
                raise StateUnusable(f"it is {size} bytes, more than the {self.maxBytes} allowed")
            try:
                state = json.loads(self.path.read_bytes())
            except (OSError, ValueError) as e:
                raise StateUnusable(f"it is not a state file: {type(e).__name__}: {e}") from None
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                version = state.get("version") if isinstance(state, dict) else None
                raise StateUnusable(f"it is of version {version!r}, not {STATE_VERSION}")
            if not isinstance(state.get("savedAt"), (int, float)):
                raise StateUnusable("it does not say when it was saved")
        except StateUnusable:
            self._setAside("rejected")
            raise
        self._setAside("loaded")
        return state

    def _setAside(self, suffix: str) -> None:
        try:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.{suffix}"))
        except OSError as e:
            self.log.warn("could not rename the state file {path}: {error}", path=str(self.path),
                          error=e.strerror)


class StateKeeper(Service):
    """
    Loads the state file as the process starts (add it to the top service
    before the listeners, so that it is loaded before any page connects),
    and saves it when told to (L{save}: by
    L{chatthing.shutdown.GracefulShutdown}, after its drain).

    @ivar factory: the site's L{LiveServerFactory <chatthing.live._factory.LiveServerFactory>}:
        its sessions, its C{adoptSession}.
    @ivar app: the application's part, if it has one.
    """

    log = Logger()

    def __init__(self, file: StateFile, factory: Any, app: IAppState | None = None) -> None:
        self.setName("state-file")
        self.file = file
        self.factory = factory
        self.app = app

    def startService(self) -> None:
        super().startService()
        self.load()

    def save(self) -> None:
        """
        Save the sessions not ended and the application's state; failing
        that, say why in one line (the next start is then a fresh one).
        """
        sessions = []
        for session in list(self.factory.sessions.values()):
            state = None if session.ended else session.element.sessionState()
            if state is not None:
                sessions.append({"session": session.ident, "page": session.page, "state": state,
                                 "seq": session.receivedSeq, "answers": session.answersNotReceived()})
        try:
            written = self.file.write({"sessions": sessions,
                                       "app": self.app.saveState() if self.app is not None else None})
        except (StateUnusable, OSError, TypeError, ValueError) as e:
            self.log.error("could not save the state file {path}: {error}; pages will start over",
                           path=str(self.file.path), error=cut(str(e)))
            return
        self.log.info("saved {count} session(s) to the state file {path} ({bytes} bytes)",
                      count=len(sessions), path=str(self.file.path), bytes=written)

    def load(self) -> None:
        """
        Load the state file, if there is one that can be used: the
        application's state first, then each session, which then waits one
        grace period for its page.
        """
        path = str(self.file.path)
        try:
            state = self.file.read()
            sessions = _records(state.get("sessions"))
            if self.app is not None and state.get("app") is not None:
                self.app.loadState(state["app"])
        except (StateUnusable, ValueError, TypeError, KeyError) as e:
            self.log.info("not resuming from the state file {path}: {why}; starting afresh",
                          path=path, why=cut(str(e)))
            return
        age = self.file.clock() - state["savedAt"]
        if age > self.factory.settings.gracePeriod:
            self.log.info("the state file {path} is {age:.0f}s old, more than the grace period: "
                          "its {count} session(s) have expired", path=path, age=age, count=len(sessions))
            return
        for ident, record, answers in sessions:
            d = self.factory.adoptSession(ident, record)
            d.addCallback(_restarted, record.receivedSeq, answers)
            d.addErrback(lambda failure, ident=ident: self.log.failure(
                "could not restore session {ident}", failure, ident=cut(ident[:6])))
        self.log.info("resuming {count} session(s) from the state file {path}, saved {age:.1f}s ago",
                      count=len(sessions), path=path, age=age)


def _records(saved: Any) -> list[tuple[str, SessionRecord, list[dict[str, Any]]]]:
    """
    The sessions of a state file, checked, each with the answers its page
    had not got (none in a file saved before they were kept).

    @raise ValueError: if one is not as L{StateKeeper.save} writes them.
    """
    if not isinstance(saved, list):
        raise ValueError("its sessions are not a list")
    records = []
    for entry in saved:
        if not (isinstance(entry, dict) and isinstance(entry.get("session"), str)
                and isinstance(entry.get("page"), str) and type(entry.get("seq")) is int):
            raise ValueError("a session in it is not one a state file holds")
        answers = entry.get("answers", [])
        if not (isinstance(answers, list) and all(_isAnswer(answer) for answer in answers)):
            raise ValueError("a session's answers in it are not answers to calls")
        records.append((entry["session"], SessionRecord(entry["page"], entry.get("state"), entry["seq"]),
                        answers))
    return records


def _isAnswer(frame: Any) -> bool:
    """
    Whether C{frame} is an answer frame as L{LiveSession.answersNotReceived
    <chatthing.live.LiveSession.answersNotReceived>} saves them.
    """
    return (isinstance(frame, dict) and frame.get("type") in ("result", "error")
            and type(frame.get("id")) is int and "seq" not in frame)


def _restarted(session: Any, receivedSeq: int, answers: list[dict[str, Any]]) -> None:
    """
    A session restored from the state file: it runs none of its page's
    frames that its predecessor ran (answering again those calls whose
    answers the page had not got), its page is told the server restarted
    when it resumes, and it has one grace period to come.
    """
    if session is not None:
        session.restartAfter(receivedSeq, answers)
        session.awaitPage()
