"""
docs/protocol.md's "A whole exchange", played against a real server, so the
document cannot drift from what the server sends.

The block is the fenced one after the C{<!-- replayed by
tests/test_protocol_doc.py ... -->} marker: C{→ JSON} lines are sent as they
are written, C{← JSON} lines are compared with the server's next frame, and
C{…} lines are acted out (each one this test knows). In a server frame the
string C{"…"} matches any value; in a page frame it is replaced by the value
the server gave for that field (the session id).
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater

from chatthing.live import LiveSettings
from chatthing.live._wire import CLOSE_TOO_FAR_BEHIND
from chatthing.live.testing import LiveTestClient
from conftest import eventually, withDeadline

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
MARKER = "<!-- replayed by tests/test_protocol_doc.py"
ANY = "…"

#: The room's clock during the exchange (2024-12-05 09:13:20 UTC): every
#: line falls in one second, so the room dates only the first.
CLOCK = 1733390000.0


def documentedExchange() -> list[tuple[str, Any]]:
    """
    The marked block of docs/protocol.md as C{(kind, value)}: C{("page",
    frame)}, C{("server", frame)} or C{("meanwhile", text)}.
    """
    text = DOC.read_text(encoding="utf-8")
    assert MARKER in text, "docs/protocol.md lost the marked exchange"
    block = re.search(r"```text\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block is not None, "no fenced block after the marker"
    steps: list[tuple[str, Any]] = []
    for line in block.group(1).splitlines():
        line = line.strip()
        if line.startswith("→"):
            steps.append(("page", json.loads(line[1:])))
        elif line.startswith("←"):
            steps.append(("server", json.loads(line[1:])))
        elif line.startswith(ANY):
            steps.append(("meanwhile", line.strip(" " + ANY)))
        elif line:
            raise AssertionError(f"a line of the exchange that is neither →, ← nor …: {line!r}")
    return steps


def matches(documented: Any, sent: Any) -> bool:
    """
    Whether the server's C{sent} is the C{documented} frame, C{"…"} standing
    for any value.
    """
    if documented == ANY:
        return True
    if isinstance(documented, dict):
        return (isinstance(sent, dict) and documented.keys() == sent.keys()
                and all(matches(documented[k], sent[k]) for k in documented))
    if isinstance(documented, list):
        return (isinstance(sent, list) and len(documented) == len(sent)
                and all(matches(d, s) for d, s in zip(documented, sent)))
    return type(documented) is type(sent) and documented == sent


def filledIn(frame: Any, given: dict[str, Any]) -> Any:
    """
    C{frame} with each C{"…"} replaced by what the server gave for its key.
    """
    if isinstance(frame, dict):
        return {k: given[k] if v == ANY else filledIn(v, given) for k, v in frame.items()}
    if isinstance(frame, list):
        return [filledIn(v, given) for v in frame]
    return frame


def test_theDocumentedExchangeIsParsed() -> None:
    """The marked block parses into page frames, server frames and the drop, beginning with hello and welcome."""
    steps = documentedExchange()
    assert steps[0] == ("page", {"type": "hello", "version": 1, "page": "/", "render": False})
    assert steps[1][0] == "server" and steps[1][1]["type"] == "welcome"
    kinds = {frame["type"] for kind, frame in steps if kind == "server"}
    assert {"welcome", "emit", "result", "error", "ack", "resumed"} <= kinds
    assert sum(kind == "meanwhile" for kind, _ in steps) == 1


def test_matchingWildcards() -> None:
    """'…' matches any value, and nothing else is loose: keys, types and lengths must agree."""
    assert matches({"session": ANY, "seq": 1}, {"session": "abc", "seq": 1})
    assert not matches({"seq": 1}, {"seq": 1, "extra": 2})
    assert not matches({"seq": 1}, {"seq": True})
    assert not matches({"seq": 1.0}, {"seq": 1})
    assert not matches({"args": [1]}, {"args": [1, 2]})
    assert filledIn({"resume": {"session": ANY, "seq": 4}}, {"session": "s"}) == {
        "resume": {"session": "s", "seq": 4}}


@pytest_twisted.ensureDeferred
async def test_theDocumentedExchangeIsWhatTheServerSends(serve) -> None:
    """Every server frame of docs/protocol.md's whole exchange is the one a real server sends, in that order."""
    server = await serve()
    server.room.clock = lambda: CLOCK
    page = LiveTestClient(server.wsUrl)
    page.autoAck = False
    server.clients.append(page)
    await page.reconnect()
    given: dict[str, Any] = {}
    read = 0
    for number, (kind, value) in enumerate(documentedExchange()):
        if kind == "page":
            page.send(filledIn(value, given))
        elif kind == "meanwhile":
            assert value == 'the network drops; bob logs in and says "missed this?"', (
                f"the test does not know how to act out {value!r}")
            page.drop()
            await page.closed()
            bob = await server.login("bob")
            await bob.call("say", "missed this?")
            await page.reconnect()
        else:
            def nextOne() -> dict[str, Any] | None:
                nonlocal read
                while read < len(page.frames):
                    frame = page.frames[read]
                    read += 1
                    if matches(value, frame):
                        return frame
                    if frame["type"] == "ack":  # acks fall where the timer says
                        continue
                    raise AssertionError(
                        f"step {number}: docs/protocol.md says the server sends\n  {value}\n"
                        f"but it sent\n  {frame}")
                return None

            frame = await eventually(nextOne, f"step {number}: {value}")
            given.update({k: v for k, v in frame.items() if value.get(k) == ANY})
    # Nothing more came that the document leaves out (but a late ack).
    assert [f for f in page.frames[read:] if f["type"] != "ack"] == []


@pytest_twisted.ensureDeferred
async def test_streamFramesAreNotCountedAsUnacknowledged(serve) -> None:
    """As documented: stream frames never count toward the unacknowledged limit; direct frames do (4008)."""
    server = await serve(LiveSettings(maxReplayFrames=5))
    alice = await server.login("alice")  # updatePresence and the result: 2 direct frames
    alice.autoAck = False
    alice.ack()
    bob = await server.login("bob")
    for n in range(20):
        await bob.call("say", f"line {n}")
    await alice.waitFor(lambda: len(alice.calls("displayUserMessage")) == 20, "bob's 20 lines")
    assert not [f for f in alice.frames[-25:] if "seq" in f and f["type"] == "emit"]
    assert not alice.isClosed  # 20 stream frames unacknowledged, over a limit of 5
    for n in range(6):  # answers are direct frames: a sixth unacknowledged one is too many
        alice.startCall("typing")
    assert await alice.closed() == CLOSE_TOO_FAR_BEHIND


@pytest_twisted.ensureDeferred
async def test_heartbeatPingsComeEveryIntervalBusyOrQuiet(serve) -> None:
    """As documented: the server pings every --ping-interval even while the page keeps sending (not only after quiet)."""
    server = await serve(LiveSettings(pingInterval=0.2, pingTimeout=5.0))
    page = await server.connect()
    pings = []
    answer = page.protocol.onPing

    def onPing(payload: bytes) -> None:
        pings.append(payload)
        answer(payload)

    page.protocol.onPing = onPing

    async def busy() -> bool:
        # A frame every 50 ms (well within the rate limits): never quiet.
        page.ack()
        await deferLater(reactor, 0.05, lambda: None)
        return len(pings) >= 4

    async def untilFourPings() -> None:
        while not await busy():
            pass

    await withDeadline(ensureDeferred(untilFourPings()))
    assert not page.isClosed
