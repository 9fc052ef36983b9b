"""
A deploy of one process logs no one out (issue 15): with C{--state-file},
SIGTERM saves the sessions, names, rooms and history after the drain, the
next process on the same port loads them, and every page resumes its
session: same name, no join announcement, nothing missed or doubled, told
once that the server restarted.  A missing or corrupt state file is one
log line and a normal start.

The restarted process must listen on the port the pages know: the test
picks a free loopback port, and if another program takes it in the moment
between the stop and the start, the start is retried on it for a few
seconds (then the test fails saying so) -- never a fixed port.
"""

import json
import re
import signal
from collections import Counter

import pytest
import pytest_twisted
from playwright.sync_api import expect
from test_browser import browser, openChat  # noqa: F401  (fixtures)
from conftest import TwistdServer, eventually, withDeadline
from oneport import chatClient, onePort  # noqa: F401  (a fixture)

from chatthing.chat import RESTART_ALERT
from chatthing.client import ChatClient

#: Lines a restarted process says when it resumes the saved sessions.
RESUMING = r"resuming (\d+) session\(s\) from the state file"


@pytest_twisted.ensureDeferred
async def test_restartWithStateFileResumesEveryone(onePort, tmp_path):
    """SIGTERM then a start with the same --state-file: every client resumes its session (0 new sessions, 0 join lines, nothing doubled), history and presence kept."""
    stateFile = tmp_path / "state.json"
    options = ("--state-file", str(stateFile), "--drain-seconds", "0.3", "--grace-period", "30")
    first = onePort.start(*options)
    clients: list[ChatClient] = []
    try:
        alice = await chatClient(first, "alice", clients)
        bob = await chatClient(first, "bob", clients)
        sessions = {c.username: c.live.session for c in clients}
        await alice.say("one")
        await bob.say("two")
        await eventually(lambda: all(len(c.heard.messages) == 2 for c in clients), "the first lines")
        joinsBefore = {c.username: len(c.heard.alertsWith("has joined")) for c in clients}

        await onePort.sigterm(first)
        first.waitForLog(r"saved 2 session\(s\) to the state file")
        assert stateFile.exists()
        second = onePort.start(*options)
        assert int(second.waitForLog(RESUMING).group(1)) == 2
        assert not stateFile.exists() and stateFile.with_name("state.json.loaded").exists()
        await eventually(lambda: all(c.connected for c in clients), "both clients back")
        await alice.say("three")
        await eventually(lambda: all(("alice", "three") in c.heard.messages for c in clients), "a line after")

        for client in clients:
            assert client.heard.newSessions == [], client.heard.newSessions
            assert client.live.session == sessions[client.username]
            assert client.heard.alerts.count(RESTART_ALERT) == 1
            assert len(client.heard.alertsWith("has joined")) == joinsBefore[client.username]
            assert client.heard.alertsWith("has left") == []
            assert client.heard.messages == [("alice", "one"), ("bob", "two"), ("alice", "three")], (client.heard.messages, client.heard.alerts, second.log())
        assert not [line for line in second.logLines if "joined" in line], second.log()
        assert len([line for line in second.logLines if "came back to" in line]) == 2
        # A newcomer sees the history and the names kept.
        carol = await chatClient(second, "carol", clients)
        assert [entry[1:3] for entry in carol.heard.history] == [
            ["alice", "one"], ["bob", "two"], ["alice", "three"]]
        assert carol.heard.presence == ["alice", "bob", "carol"]
        taken = await withDeadline(ChatClient.connect(second.wsUrl, "Alice").addErrback(lambda f: f.value))
        assert getattr(taken, "name", None) == "UsernameTaken", taken
    finally:
        for client in clients:
            await withDeadline(client.close(), 5)


@pytest_twisted.ensureDeferred
async def test_restoredNameIsHeldUntilItsPageIsGone(onePort, tmp_path):
    """After a restart with a state file, a name whose page does not come back stays taken for the grace period, then leaves once, announced."""
    from chatthing.live.testing import LiveTestClient

    options = ("--state-file", str(tmp_path / "state.json"), "--drain-seconds", "0", "--grace-period", "10")
    first = onePort.start(*options)
    clients: list[ChatClient] = []
    try:
        alice = await chatClient(first, "alice", clients)
        # A page that never reconnects by itself.
        bob = await LiveTestClient.connect(first.wsUrl)
        assert (await bob.call("setUsername", "bob"))["type"] == "result"
        await eventually(lambda: alice.heard.presence == ["alice", "bob"], "bob in presence")
        await onePort.sigterm(first)
        second = onePort.start(*options)
        assert int(second.waitForLog(RESUMING).group(1)) == 2
        await eventually(lambda: alice.connected, "alice back")
        # bob's session waits for its page: the name is not free.
        taken = await withDeadline(ChatClient.connect(second.wsUrl, "bob").addErrback(lambda f: f.value))
        assert getattr(taken, "name", None) == "UsernameTaken", taken
        await eventually(lambda: alice.heard.presence == ["alice"], "bob gone after the grace period")
        assert alice.heard.alertsWith("has left") == [" * user bob has left the room"]
        assert alice.heard.newSessions == []
    finally:
        for client in clients:
            await withDeadline(client.close(), 5)


@pytest_twisted.ensureDeferred
async def test_corruptStateFileIsOneLineAndAFreshStart(onePort, tmp_path):
    """A corrupt state file, or one of another version: one log line, set aside, and a normal start."""
    stateFile = tmp_path / "state.json"
    for content in ("{not json", json.dumps({"version": 99, "savedAt": 0, "sessions": []})):
        stateFile.write_text(content)
        server = onePort.start("--state-file", str(stateFile))
        lines = [line for line in server.logLines if "state file" in line]
        assert len(lines) == 1 and "not resuming from the state file" in lines[0], server.log()
        assert not stateFile.exists() and stateFile.with_name("state.json.rejected").exists()
        client = await withDeadline(ChatClient.connect(server.wsUrl, "dave"))
        await withDeadline(client.close(), 5)
        await onePort.sigterm(server)
        stateFile.unlink()
    # And a missing one.
    server = onePort.start("--state-file", str(stateFile))
    assert "no such file" in server.waitForLog("not resuming from the state file.*").group(0)


def test_stateFileIsWrittenWholeAndBounded(tmp_path):
    """The state file is replaced whole (no temporary left), and a state over the bound is neither written nor read."""
    from chatthing.live import StateFile

    path = tmp_path / "state.json"
    small = StateFile(str(path), maxBytes=2048)
    assert small.write({"sessions": [], "app": None}) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert path.stat().st_mode & 0o777 == 0o600  # session ids: the server's user's only
    with pytest.raises(Exception, match="more than the 2048 allowed"):
        small.write({"sessions": [], "app": "x" * 4096})
    assert json.loads(path.read_text())["app"] is None  # the old file is left whole
    path.write_text(json.dumps({"version": 1, "savedAt": 0, "app": "x" * 4096}))
    with pytest.raises(Exception, match="more than the 2048 allowed"):
        small.read()
    assert Counter(p.name for p in tmp_path.iterdir()) == Counter(["state.json.rejected"])


# In a browser


def pageErrors(chat) -> list[str]:
    """
    The page's console errors, but for the browser's own line for each
    attempt to reconnect while no server listened.
    """
    return [error for error in chat.errors if "ERR_CONNECTION_REFUSED" not in error]


def sigtermAndWait(server: TwistdServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) in (0, -signal.SIGTERM), server.log()


def test_pageResumesAfterRestartWithStateFile(onePort, tmp_path, openChat):
    """A Chromium page resumes after a restart with --state-file: transcript kept, no line doubled, no new divider or join line, told once."""
    options = ("--state-file", str(tmp_path / "state.json"), "--drain-seconds", "0.3")
    first = onePort.start(*options)
    alice, bob = openChat(url=first.url), None
    alice.login("alice")
    alice.say("one")
    alice.say("two")
    bob = openChat(url=first.url)
    bob.login("bob")
    bob.say("three")
    said = ["alice: one", "alice: two", "bob: three"]
    for chat in (alice, bob):
        expect(chat.scrollArea.locator(".message.user")).to_have_text(said)
    before = {n: chat.lines.all_inner_texts() for n, chat in enumerate((alice, bob))}
    dividers = [chat.scrollArea.locator(".divider").count() for chat in (alice, bob)]

    sigtermAndWait(first)
    second = onePort.start(*options)
    second.waitForLog(RESUMING)
    restarted = "The server restarted; you are still logged in as"
    for chat, name in ((alice, "alice"), (bob, "bob")):
        chat.expectLine(f"{restarted} {name}.")
        expect(chat.page.locator("html")).to_have_attribute("data-live-status", "connected")
    bob.say("four")
    for n, chat in enumerate((alice, bob)):
        expect(chat.scrollArea.locator(".message.user")).to_have_text(said + ["bob: four"])
        lines = chat.lines.all_inner_texts()
        assert lines[:len(before[n])] == before[n]
        assert Counter(lines)[RESTART_ALERT] == 1
        assert len([line for line in lines if "has joined" in line]) == len(
            [line for line in before[n] if "has joined" in line])
        assert len([line for line in lines if line.startswith(restarted)]) == 1
        assert chat.scrollArea.locator(".divider").count() == dividers[n]
        assert chat.page.locator("[data-live-notice]").is_hidden()
        assert pageErrors(chat) == []


def test_pageLogsInAgainAfterRestartWithoutStateFile(onePort, openChat):
    """Without a state file the page keeps its transcript, logs in again as its name by itself, and says so."""
    first = onePort.start("--drain-seconds", "0.3")
    alice = openChat(url=first.url)
    alice.login("alice")
    alice.say("before the restart")
    alice.expectLine("alice: before the restart")
    before = alice.lines.all_inner_texts()

    sigtermAndWait(first)
    onePort.start("--drain-seconds", "0.3")
    alice.expectLine("The server restarted; you are logged in again as alice.")
    expect(alice.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as alice")
    alice.say("after the restart")
    expect(alice.scrollArea.locator(".message.user")).to_have_text(
        ["alice: before the restart", "alice: after the restart"])
    assert alice.lines.all_inner_texts()[:len(before)] == before
    assert alice.page.locator("[data-live-notice]").is_hidden()
    assert pageErrors(alice) == []


def test_stateFileOptions(tmp_path):
    """--state-file is refused with --redis (Redis keeps the sessions), and its bound must be a number of bytes."""
    from twisted.python import usage

    from chatthing.tap import Options

    base = ["--element", "chatthing.chatterbox.chat", "--state-file", str(tmp_path / "s.json")]
    assert Options().parseOptions(base) is None
    with pytest.raises(usage.UsageError, match="--state-file is for a process that runs alone"):
        Options().parseOptions([*base, "--redis", "redis://127.0.0.1:6379/0"])
    with pytest.raises(usage.UsageError, match="--state-file-max-bytes must be"):
        Options().parseOptions([*base, "--state-file-max-bytes", "lots"])


def test_pageSaysWhenItsNameWasTakenAfterRestart(onePort, openChat, tmp_path):
    """Without a state file, if someone took the page's name while it was away, the page keeps its transcript, says so, and shows the login box."""
    import subprocess
    import sys

    from conftest import subprocessEnvironment

    first = onePort.start("--drain-seconds", "0")
    alice = openChat(url=first.url)
    alice.login("alice")
    alice.say("mine")
    alice.expectLine("alice: mine")
    # The page waits to come back until told to (below)...
    alice.page.evaluate("() => { liveSocket.backoff.base = 600000; liveSocket.backoff.cap = 600000; }")
    sigtermAndWait(first)
    second = onePort.start("--drain-seconds", "0")
    # ...by when a bot (in another process, so this one's reactor may wait) holds the name.
    bot = subprocess.Popen(
        [sys.executable, "-c", BOT, second.wsUrl], env=subprocessEnvironment(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert bot.stdout.readline().strip() == "alice"
        alice.page.wait_for_function("() => liveSocket.state === 'reconnecting'")
        alice.page.evaluate("() => liveSocket.retryNow()")
        alice.expectLine(re.compile(r"^The server restarted, and you could not log in again as alice: "
                                    r".*taken"))
        expect(alice.page.locator('[name="chooseBox"]')).to_be_visible()
        expect(alice.page.locator('[name="loginError"]')).to_contain_text("taken")
        alice.expectLine("alice: mine")
        assert pageErrors(alice) == []
    finally:
        bot.kill()
        bot.wait()


#: A bot that logs in as alice, prints its name, and stays until killed.
BOT = """
import sys
from twisted.internet import defer, task
from chatthing.client import ChatClient

async def main(reactor):
    client = await ChatClient.connect(sys.argv[1], "alice")
    print(client.username, flush=True)
    await defer.Deferred()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


@pytest_twisted.ensureDeferred
async def test_callWhoseAnswerTheDrainCutOffIsAnsweredOnceAfterRestart(onePort, tmp_path):
    """A page's say that ran but whose answer never reached the page before the drain closed its connection: after a
    restart with the state file the page sends it again (rerun) and gets one answer, and the line is said once."""
    from chatthing.live.testing import LiveTestClient

    options = ("--state-file", str(tmp_path / "state.json"), "--drain-seconds", "0", "--grace-period", "30")
    first = onePort.start(*options)
    alice = await LiveTestClient.connect(first.wsUrl)
    bob = await LiveTestClient.connect(first.wsUrl)
    try:
        for page, name in ((alice, "alice"), (bob, "bob")):
            assert (await page.call("setUsername", name))["type"] == "result"
        # alice reads nothing more: the answer to her say stays unread at her end.
        alice.protocol.transport.pauseProducing()
        ident = alice.startCall("say", "said once")
        await bob.waitFor(lambda: ["alice", "said once"] in [args[:2] for args in bob.calls("displayUserMessage")],
                          "bob to hear alice's line")
        await onePort.sigterm(first)
        first.waitForLog(r"saved 2 session\(s\) to the state file")
        alice.drop()  # what she had not read is lost with the connection
        await alice.closed()
        assert [f for f in alice.frames if f.get("id") == ident and f["type"] in ("result", "error")] == []
        second = onePort.start(*options)
        assert int(second.waitForLog(RESUMING).group(1)) == 2
        resumed = await alice.resume()
        assert resumed["type"] == "resumed" and resumed.get("restarted") is True, resumed
        answer = await alice.answerTo(ident, "the answer to the say sent again")
        assert answer["type"] == "result", answer
        await bob.resume()
        carol = await LiveTestClient.connect(second.wsUrl)
        history = await carol.waitFor(lambda: carol.calls("displayHistory"), "carol's history")
        said = Counter(tuple(entry[1:3]) for entry in history[0][0])
        assert said[("alice", "said once")] == 1, history
        assert len([f for f in alice.frames if f.get("id") == ident and f["type"] in ("result", "error")]) == 1
        assert alice.duplicates == 0
    finally:
        for page in (alice, bob):
            page.drop()


def test_callsSentAgainAfterRestartAreAnsweredNotRun():
    """A restored session answers each call its page sends again (rerun) that the predecessor had run: with the
    predecessor's answer the page never got, or ServerRestarted for one still running when it saved; none runs twice."""
    from test_live_units import FakeConnection
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from chatthing.live import LiveElement, LiveSettings, expose
    from chatthing.live._session import LiveSession

    class Counting(LiveElement):
        def __init__(self):
            self.ran = []

        @expose
        def echo(self, value):
            self.ran.append(value)
            return value

        @expose
        def slow(self):
            self.ran.append("slow")
            return Deferred()  # still running when the process stops

    def session(element):
        made = LiveSession("sess", element, LiveSettings(gracePeriod=30), Clock(), lambda s: None)
        element._liveAttach(made)
        return made

    before = Counting()
    old = session(before)
    old.attach(FakeConnection())
    calls = [{"type": "call", "id": 0, "method": "echo", "args": ["hi"], "seq": 1},
             {"type": "call", "id": 1, "method": "slow", "args": [], "seq": 2}]
    for frame in calls:
        old.receive(frame)
    saved = json.loads(json.dumps(old.answersNotReceived()))  # as the state file keeps them
    assert (old.receivedSeq, saved, before.ran) == (2, [{"type": "result", "id": 0, "value": "hi"}], ["hi", "slow"])

    after = Counting()
    new = session(after)
    new.adopted = True
    new.restartAfter(old.receivedSeq, saved)
    page = FakeConnection()
    assert new.resume(page, 0, {}) is None
    for frame in calls + [{"type": "call", "id": 2, "method": "echo", "args": ["new"], "seq": 3}]:
        new.receive(frame)
    assert after.ran == ["new"]
    assert [{k: v for k, v in f.items() if k != "seq"} for f in page.frames[1:]] == [
        {"type": "result", "id": 0, "value": "hi"},
        {"type": "error", "id": 1, "error": {"name": "ServerRestarted", "message":
         "the server restarted before answering this call; it may or may not have been done"}},
        {"type": "result", "id": 2, "value": "new"},
    ]
