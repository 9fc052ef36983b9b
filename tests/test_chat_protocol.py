"""
The chat application over real WebSockets: login, alerts, fan-out, leaving,
the server's own calls into pages (C{callRemote}), and pages that drop and
come back (resume).

Every test runs a real server (C{chatServer}, or C{graceServer} for a short
grace period) and talks to it with real WebSocket clients
(L{LiveTestClient}); waits have deadlines, never fixed sleeps.
"""

import json
import re

import pytest
import pytest_twisted
from conftest import eventually, presenceOf, startChatServer, withDeadline
from twisted.internet import reactor

from chatthing.live import ElementDetached, ILiveApplication, LiveSettings, RemoteError
from chatthing.live.testing import HOLD, LiveTestClient

#: Seconds a test waits for the server to reach a state before it fails.
DEADLINE = 10.0

#: The grace period of C{graceServer}: seconds a dropped page has to resume.
GRACE = 1.0


@pytest_twisted.async_yield_fixture
async def graceServer():
    """
    A fresh chat room like C{chatServer}'s, whose pages that drop have only
    L{GRACE} seconds to come back.
    """
    server = await startChatServer(LiveSettings(gracePeriod=GRACE))
    yield server
    await server.stop()


def joined(name: str) -> list[str]:
    return [f" * user {name} has joined the room"]


def left(name: str) -> list[str]:
    return [f" * user {name} has left the room"]


def leavesTold(client: LiveTestClient) -> int:
    """
    How many leaves C{client}'s page was told of: one per line, or many in
    one (" * ann, bob and 4 others left the room").
    """
    count = 0
    for [line] in client.calls("displayMessage"):
        many = re.fullmatch(r" \* .+, .+ and (\d+) others left the room", line)
        count += int(many.group(1)) + 2 if many else ("has left" in line)
    return count


def elementOf(chatServer, client: LiveTestClient):
    """
    The server-side element of C{client}'s page.
    """
    session = client.welcome["session"]
    for element in chatServer.room.chatters:
        if element._liveSession is not None and element._liveSession.ident == session:
            return element
    raise AssertionError(f"no element for session {session}")


async def expectError(client: LiveTestClient, method: str, *args, name: str, says: str) -> dict:
    """
    Call C{method(*args)} and check that it is refused with error C{name},
    whose message contains C{says}.
    """
    answer = await client.call(method, *args)
    assert answer["type"] == "error", answer
    assert answer["error"]["name"] == name, answer
    assert says in answer["error"]["message"], answer
    return answer


async def expectResult(client: LiveTestClient, method: str, *args):
    answer = await client.call(method, *args)
    assert answer["type"] == "result", answer
    return answer["value"]


# Login


@pytest_twisted.ensureDeferred
async def test_joinAlertReachesEveryPage(chatServer):
    """A join alert reaches every connected page: earlier ones, logged in or not, and the joiner's own."""
    alice = await chatServer.login("alice")
    lurker = await chatServer.connect()
    bob = await chatServer.connect()
    assert await expectResult(bob, "setUsername", "bob") == "bob"
    for client in (alice, lurker, bob):
        await client.waitFor(lambda c=client: joined("bob") in c.calls("displayMessage"),
                             "bob's join alert")
    assert joined("alice") in alice.calls("displayMessage")
    assert joined("alice") not in bob.calls("displayMessage")  # bob came later


@pytest_twisted.ensureDeferred
async def test_setUsernameReturnsTrimmedName(chatServer):
    """setUsername returns the name trimmed of surrounding whitespace, and announces that name."""
    alice = await chatServer.connect()
    assert await expectResult(alice, "setUsername", "  alice \t") == "alice"
    await alice.waitFor(lambda: joined("alice") in alice.calls("displayMessage"))
    assert chatServer.room.online() == ["alice"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("taken", ["alice", "Alice ", "  ALICE", "aLiCe"])
async def test_namesAreUniqueCaseInsensitively(chatServer, taken):
    """A name that matches an online name after trimming and case-folding is refused, and the page may retry."""
    alice = await chatServer.login("Alice")
    second = await chatServer.connect()
    answer = await expectError(second, "setUsername", taken, name="UsernameTaken", says="taken")
    assert taken.strip() in answer["error"]["message"]
    assert await expectResult(second, "setUsername", "bob") == "bob"
    await alice.waitFor(lambda: joined("bob") in alice.calls("displayMessage"))
    assert chatServer.room.online() == ["Alice", "bob"]
    assert [f for f in alice.calls("displayMessage") if "joined" in f[0]] == [joined("Alice"), joined("bob")]


@pytest_twisted.ensureDeferred
async def test_nameIsFreeAfterOwnerLeaves(chatServer):
    """Once a user's page closes, another page can take that name."""
    alice = await chatServer.login("alice")
    watcher = await chatServer.login("watcher")
    taker = await chatServer.connect()
    await expectError(taker, "setUsername", "ALICE", name="UsernameTaken", says="taken")
    alice.close()
    await watcher.waitFor(lambda: left("alice") in watcher.calls("displayMessage"))
    assert await expectResult(taker, "setUsername", "Alice") == "Alice"
    await watcher.waitFor(lambda: joined("Alice") in watcher.calls("displayMessage"))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name, says", [
    ("", "choose a username"),
    ("   ", "choose a username"),
    ("\t\n ", "choose a username"),
    ("a" * 33, "at most 32"),
    ("  " + "b" * 33 + "  ", "at most 32"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("a\x1bb", "control characters"),
    ("a\u200bb", "control characters"),  # zero-width space: does not print
])
async def test_invalidUsernames(chatServer, name, says):
    """Empty, blank, over-long or unprintable names are refused with InvalidUsername; the page can retry."""
    watcher = await chatServer.login("watcher")
    page = await chatServer.connect()
    await expectError(page, "setUsername", name, name="InvalidUsername", says=says)
    assert chatServer.room.online() == ["watcher"]
    assert await expectResult(page, "setUsername", "carol") == "carol"
    await watcher.waitFor(lambda: joined("carol") in watcher.calls("displayMessage"))
    assert [m for m in watcher.calls("displayMessage")] == [joined("watcher"), joined("carol")]


@pytest_twisted.ensureDeferred
async def test_thirtyTwoCharacterNameIsAccepted(chatServer):
    """A 32-character name (after trimming) is the longest accepted."""
    page = await chatServer.connect()
    name = "x" * 32
    assert await expectResult(page, "setUsername", f"  {name}  ") == name
    await page.waitFor(lambda: joined(name) in page.calls("displayMessage"))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("value", [None, 5, 1.5, True, ["alice"], {"name": "alice"}])
async def test_nonStringUsernameIsBadArguments(chatServer, value):
    """A username that is not a string is refused with BadArguments, and the page can still log in."""
    page = await chatServer.connect()
    await expectError(page, "setUsername", value, name="BadArguments", says="must be a string")
    assert await expectResult(page, "setUsername", "alice") == "alice"


@pytest_twisted.ensureDeferred
async def test_loggingInTwiceIsRefused(chatServer):
    """
    A page that has chosen a name cannot choose another: AlreadyLoggedIn, and
    its name stays.  Choosing the same name again is the same call again (a
    page re-sends its calls when its session moves to another process): it
    gets the same answer, and nothing is announced twice.
    """
    alice = await chatServer.login("alice")
    await expectError(alice, "setUsername", "alicia", name="AlreadyLoggedIn", says="alice")
    joined = len(alice.calls("displayMessage"))
    await expectResult(alice, "setUsername", "alice")
    assert chatServer.room.online() == ["alice"]
    await expectResult(alice, "say", "still me")
    await alice.waitFor(lambda: ["alice", "still me"] in alice.calls("displayUserMessage"))
    assert len(alice.calls("displayMessage")) == joined


# Fan-out and order


@pytest_twisted.ensureDeferred
async def test_messageReachesEveryone(chatServer):
    """A message from one user reaches every page, logged in or not, as [speaker, text]."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    lurker = await chatServer.connect()
    answer = await alice.call("say", "hello bob")
    assert answer == {"type": "result", "seq": 3, "id": 1, "value": None}
    for client in (alice, bob, lurker):
        await client.waitFor(lambda c=client: ["alice", "hello bob"] in c.calls("displayUserMessage"))


@pytest_twisted.ensureDeferred
async def test_messagesAreTrimmed(chatServer):
    """A message is delivered trimmed of surrounding whitespace; inner whitespace is kept."""
    alice = await chatServer.login("alice")
    await expectResult(alice, "say", "  hello \n  world \t")
    await alice.waitFor(lambda: alice.calls("displayUserMessage"))
    assert alice.calls("displayUserMessage") == [["alice", "hello \n  world"]]


@pytest_twisted.ensureDeferred
async def test_concurrentMessagesSameOrderEverywhere(chatServer):
    """With four users sending 30 messages each at once, every page gets all 120, in one common order."""
    names = ["alice", "bob", "carol", "dave"]
    perUser = 30
    clients = {name: await chatServer.login(name) for name in names}
    lurker = await chatServer.connect()
    pages = [*clients.values(), lurker]
    # Send everything without waiting for answers, interleaving the senders
    # (30 frames each: within the rate limit's burst).
    for i in range(perUser):
        for name, client in clients.items():
            client.sendNumbered({"type": "call", "id": 1000 + i, "method": "say",
                                 "args": [f"{name} says {i}"]})
    total = perUser * len(names)
    for page in pages:
        await page.waitFor(lambda p=page: len(p.calls("displayUserMessage")) >= total,
                           f"{total} messages", deadline=30)
    transcript = lurker.calls("displayUserMessage")
    assert len(transcript) == total
    for page in pages:
        assert page.calls("displayUserMessage") == transcript
    for name, client in clients.items():
        # Each speaker's messages arrive whole, prefixed and in the order said.
        said = [text for speaker, text in transcript if speaker == name]
        assert said == [f"{name} says {i}" for i in range(perUser)]
        def answers(client=client):
            return [f for f in client.frames if f.get("type") in ("result", "error")
                    and f.get("id", 0) >= 1000]

        await client.waitFor(lambda: len(answers()) >= perUser, f"{perUser} answers")
        assert answers() == [{"type": "result", "seq": 3 + i, "id": 1000 + i, "value": None}
                           for i in range(perUser)]
        assert client.duplicates == 0


# Leaving


@pytest_twisted.ensureDeferred
async def test_leaveAlert(chatServer):
    """Closing a logged-in page tells the others ' * user NAME has left the room' and drops it from the room."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    lurker = await chatServer.connect()
    assert len(chatServer.room.chatters) == 3
    alice.close()
    for client in (bob, lurker):
        await client.waitFor(lambda c=client: left("alice") in c.calls("displayMessage"),
                             "alice's leave alert")
    assert len(chatServer.room.chatters) == 2
    assert chatServer.room.online() == ["bob"]
    assert left("alice") not in alice.calls("displayMessage")


@pytest_twisted.ensureDeferred
async def test_anonymousPageLeavesSilently(chatServer):
    """A page that never logged in leaves no alert behind, and is dropped from the room."""
    bob = await chatServer.login("bob")
    anonymous = await chatServer.connect()
    assert len(chatServer.room.chatters) == 2
    anonymous.close()
    await eventually(lambda: len(chatServer.room.chatters) == 1, "the anonymous page to be dropped")
    # Anything the leave sent to bob precedes this marker on bob's connection.
    await expectResult(bob, "say", "marker")
    await bob.waitFor(lambda: ["bob", "marker"] in bob.calls("displayUserMessage"))
    assert bob.calls("displayMessage") == [joined("bob")]
    assert chatServer.room.online() == ["bob"]


@pytest_twisted.ensureDeferred
async def test_noLeaks(graceServer):
    """After pages come and go, abruptly (their grace period then expiring) or cleanly, the room and the site hold only the open ones, and every leave is announced."""
    chatServer = graceServer
    stayer = await chatServer.login("stayer")
    for round in range(3):
        pages = [await chatServer.login(f"user{round}-{i}") for i in range(6)]
        pages += [await chatServer.connect() for i in range(2)]
        # A page that joined after the leavers, so it is after them in the room.
        witness = await chatServer.login(f"witness{round}")
        for i, page in enumerate(pages):
            if i % 2:
                page.close()
            else:
                page.drop()  # no closing handshake: gone when the grace period ends
        await eventually(lambda: len(chatServer.room.chatters) == 2, "pages to be dropped")
        for client in (stayer, witness):
            # Leaves in one batch are told in one line past three of them.
            await client.waitFor(lambda c=client: leavesTold(c) >= (7 * round + 6 if c is stayer else 6)
                                 and presenceOf(c) == ["stayer", f"witness{round}"],
                                 "every leave alert, and the leavers gone from the list")
        witness.close()
        await eventually(lambda: len(chatServer.room.chatters) == 1, "the witness to be dropped")
    assert chatServer.room.chatters == [elementOf(chatServer, stayer)]
    assert chatServer.room.online() == ["stayer"]
    assert len(chatServer.site.liveFactory.sessions) == 1
    await expectResult(stayer, "say", "alone")
    await stayer.waitFor(lambda: ["stayer", "alone"] in stayer.calls("displayUserMessage"))
    assert leavesTold(stayer) == 21


def serverProtocolOf(chatServer, client: LiveTestClient):
    """
    The server's WebSocket protocol for C{client}'s page.
    """
    return elementOf(chatServer, client)._liveSession.connection


@pytest_twisted.ensureDeferred
async def test_closingPageDoesNotBreakFanOut(chatServer):
    """A page in its closing handshake is skipped: messages, alerts and leaves still reach the pages after it."""
    alice = await chatServer.login("alice")
    closing = await chatServer.login("closing")
    bob = await chatServer.login("bob")
    room = chatServer.room
    # The middle page's leave frame arrives and the server starts closing;
    # until its TCP connection is gone, its WebSocket is neither open nor
    # detached.
    protocol = serverProtocolOf(chatServer, closing)
    protocol.onMessage(b'{"type": "leave"}', False)
    assert protocol.state == protocol.STATE_CLOSING
    elementOf(chatServer, alice).say("after the close")  # what alice's say() call runs
    assert room.wall("alert after the close") == 3
    for client in (alice, bob):
        await client.waitFor(lambda c=client: ["alice", "after the close"] in c.calls("displayUserMessage"))
        await client.waitFor(lambda c=client: ["alert after the close"] in c.calls("displayMessage"))
        await client.waitFor(lambda c=client: left("closing") in c.calls("displayMessage"))
    await closing.closed()
    assert room.online() == ["alice", "bob"]


# The server's calls into the page


async def holdingPage(chatServer, *held: str) -> tuple[LiveTestClient, object]:
    """
    A page that does not answer the server's calls to the methods in
    C{held}: the test answers them, or not, by sending frames itself.
    """
    client = await chatServer.connect()
    client.answer = lambda method, args: HOLD if method in held else None
    return client, elementOf(chatServer, client)


async def heldCall(client: LiveTestClient, method: str) -> dict:
    return await client.nextFrame(lambda f: f.get("type") == "call" and f.get("method") == method,
                                  f"the server's call to {method}()")


@pytest_twisted.ensureDeferred
async def test_callRemoteResult(chatServer):
    """element.callRemote fires with the value the page answers."""
    page = await chatServer.connect()
    page.answer = lambda method, args: {"echo": [method, args]}
    element = elementOf(chatServer, page)
    value = await withDeadline(element.callRemote("anything", 1, "two", [3]))
    assert value == {"echo": ["anything", [1, "two", [3]]]}


@pytest_twisted.ensureDeferred
async def test_callRemoteRemoteError(chatServer):
    """A page's error answer fails callRemote's Deferred with RemoteError carrying its name and message."""
    page, element = await holdingPage(chatServer, "explode")
    d = element.callRemote("explode", "now")
    call = await heldCall(page, "explode")
    assert call["args"] == ["now"]
    page.sendNumbered({"type": "error", "id": call["id"],
                       "error": {"name": "TypeError", "message": "widget.explode is not a function"}})
    with pytest.raises(RemoteError) as caught:
        await withDeadline(d)
    assert caught.value.name == "TypeError"
    assert caught.value.message == "widget.explode is not a function"
    # The page is still attached and still answers.
    assert await withDeadline(element.callRemote("displayMessage", "ok")) is None


@pytest_twisted.ensureDeferred
async def test_callRemoteAfterCloseFailsFast(chatServer):
    """callRemote on an element whose page has closed fails at once with ElementDetached."""
    page = await chatServer.connect()
    element = elementOf(chatServer, page)
    page.close()
    await withDeadline(element.notifyOnDisconnect())
    d = element.callRemote("displayMessage", "anyone there?")
    failures = []
    d.addErrback(failures.append)
    assert len(failures) == 1, "callRemote on a detached element did not fail at once"
    assert failures[0].check(ElementDetached)
    assert "displayMessage" in str(failures[0].value)


@pytest_twisted.ensureDeferred
async def test_pendingCallRemoteFailsWhenPageCloses(chatServer):
    """A callRemote still waiting for its answer fails with ElementDetached when the page closes."""
    page, element = await holdingPage(chatServer, "slow")
    d = element.callRemote("slow")
    await heldCall(page, "slow")
    page.close()
    with pytest.raises(ElementDetached):
        await withDeadline(d)


@pytest_twisted.ensureDeferred
async def test_pendingCallRemoteFailsWhenGraceExpires(graceServer):
    """A pending callRemote survives its page's TCP connection dropping, and fails with ElementDetached when the grace period ends."""
    page, element = await holdingPage(graceServer, "slow")
    session = element._liveSession
    d = element.callRemote("slow")
    await heldCall(page, "slow")
    page.drop()
    await eventually(lambda: session.connection is None, "the server to notice the drop")
    dropped = reactor.seconds()
    assert not d.called
    with pytest.raises(ElementDetached):
        await withDeadline(d)
    assert reactor.seconds() - dropped >= GRACE - 0.05
    assert session.ended


@pytest_twisted.ensureDeferred
async def test_pendingCallRemoteAnsweredAfterResume(chatServer):
    """A call made while the page is away is sent when it resumes, and its answer fires callRemote's Deferred."""
    page = await chatServer.connect()
    element = elementOf(chatServer, page)
    session = element._liveSession
    page.drop()
    await eventually(lambda: session.connection is None, "the server to notice the drop")
    page.answer = lambda method, args: {"echo": [method, args]}
    d = element.callRemote("ping", 1, "two")
    assert not d.called
    await page.resume()
    assert await withDeadline(d) == {"echo": ["ping", [1, "two"]]}
    assert page.calls("ping") == [[1, "two"]]
    assert page.duplicates == 0


@pytest_twisted.ensureDeferred
async def test_notifyOnDisconnectFires(chatServer):
    """notifyOnDisconnect fires (never fails) when the page goes, and at once if it already has."""
    page = await chatServer.connect()
    element = elementOf(chatServer, page)
    before = element.notifyOnDisconnect()
    assert not before.called
    page.close()
    reason = await withDeadline(before)
    assert isinstance(reason, Exception)
    after = element.notifyOnDisconnect()
    assert after.called
    assert await after is reason


@pytest_twisted.ensureDeferred
async def test_malformedErrorAnswerKeepsCallPending(chatServer):
    """An error answer with no "error" object is refused, and its call is not lost: it still fails when the page closes."""
    page, element = await holdingPage(chatServer, "slow")
    d = element.callRemote("slow")
    call = await heldCall(page, "slow")
    page.sendNumbered({"type": "error", "id": call["id"], "error": "not an object"})
    refusal = await page.nextFrame(lambda f: f.get("type") == "error")
    # Not the server call's id: the page could take it for one of its own calls.
    assert refusal["id"] is None and "seq" in refusal, refusal
    assert refusal["error"]["name"] == "ProtocolError"
    assert '"error" object' in refusal["error"]["message"]
    assert not d.called
    page.close()
    with pytest.raises(ElementDetached):
        await withDeadline(d)


# Closing by the server


@pytest_twisted.ensureDeferred
async def test_noHelloInTimeClosesWith1002(chatServer, monkeypatch):
    """A connection that sends no hello in time is closed with 1002; pages that said hello are not."""
    from chatthing.live import _protocol
    monkeypatch.setattr(_protocol, "HELLO_TIMEOUT", 0.3)
    # Close codes are only seen if the page answers the close frame before
    # the server gives up waiting: allow for a loaded machine.
    chatServer.site.liveFactory.setProtocolOptions(closeHandshakeTimeout=10)
    alice = await chatServer.login("alice")  # her hello deadline passes before silent's
    silent = await chatServer.connect(hello=False)
    assert await silent.closed() == 1002
    assert silent.frames == []
    assert len(chatServer.room.chatters) == 1
    assert not alice.isClosed
    await expectResult(alice, "say", "still here")
    await alice.waitFor(lambda: ["alice", "still here"] in alice.calls("displayUserMessage"))


@pytest_twisted.ensureDeferred
async def test_elementFactoryFailureClosesWith1011(chatServer):
    """If the application cannot make an element, that page is closed with 1011 and others carry on."""
    alice = await chatServer.login("alice")
    factory = chatServer.site.liveFactory
    factory.setProtocolOptions(closeHandshakeTimeout=10)  # see test_noHelloInTimeClosesWith1002
    working = factory.application

    def broken():
        raise RuntimeError("no elements today")

    factory.application = ILiveApplication(broken)
    try:
        unlucky = await chatServer.connect(hello=False)
        unlucky.send({"type": "hello", "version": 1, "render": False})
        assert await unlucky.closed() == 1011
        assert not any(f["type"] == "welcome" for f in unlucky.frames)
    finally:
        factory.application = working
    assert len(chatServer.room.chatters) == 1
    await expectResult(alice, "say", "still here")
    await alice.waitFor(lambda: ["alice", "still here"] in alice.calls("displayUserMessage"))


# Dropping and coming back


def patientClose(chatServer) -> None:
    """
    Give pages 10 s to answer the server's close frame, so that its close
    code is seen even on a loaded machine (see test_bad_input.patientClose).
    """
    chatServer.site.liveFactory.setProtocolOptions(closeHandshakeTimeout=10)


async def dropAndWait(chatServer, client: LiveTestClient):
    """
    Drop C{client}'s connection, with no closing handshake, and wait until
    the server has noticed; its session.
    """
    session = elementOf(chatServer, client)._liveSession
    client.drop()
    await client.closed()
    await eventually(lambda: session.connection is None, "the server to notice the drop")
    return session


async def said(listener: LiveTestClient, speaker: str, text: str) -> None:
    await listener.waitFor(lambda: [speaker, text] in listener.calls("displayUserMessage"),
                           f"{speaker}'s message {text!r}")


@pytest_twisted.ensureDeferred
async def test_resumeWithinGraceKeepsElement(chatServer):
    """A page that drops and resumes within the grace period keeps its element and name, unannounced, and gets every message said while it was away exactly once, in order."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    await alice.waitFor(lambda: joined("bob") in alice.calls("displayMessage"))
    element = elementOf(chatServer, alice)
    session = await dropAndWait(chatServer, alice)
    sent = [f"while you were away #{i}" for i in range(25)]
    for text in sent:
        await expectResult(bob, "say", text)
    await said(bob, "bob", sent[-1])
    assert chatServer.room.online() == ["alice", "bob"]

    resumed = await alice.resume()
    assert resumed == {"type": "resumed", "session": session.ident, "seq": 1}
    await alice.waitFor(lambda: len(alice.calls("displayUserMessage")) >= len(sent),
                        "the messages missed")
    assert alice.calls("displayUserMessage") == [["bob", text] for text in sent]
    assert elementOf(chatServer, alice) is element
    assert element._liveSession is session and session.connection is not None
    assert element.username == "alice"
    # Still the same page: it speaks as alice, and nobody saw it leave or join.
    await expectResult(alice, "say", "I'm back")
    await said(bob, "alice", "I'm back")
    await said(alice, "alice", "I'm back")
    assert alice.calls("displayUserMessage") == [["bob", text] for text in sent] + [["alice", "I'm back"]]
    assert alice.calls("displayMessage") == [joined("alice"), joined("bob")]
    assert bob.calls("displayMessage") == [joined("bob")]
    assert chatServer.room.chatters == [element, elementOf(chatServer, bob)]
    assert alice.duplicates == 0 and bob.duplicates == 0
    assert not alice.errors()


@pytest_twisted.ensureDeferred
async def test_sayWhileDisconnectedDeliveredOnce(chatServer):
    """A say sent while the connection is down is sent again after the resume, run once, and answered once."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    await dropAndWait(chatServer, alice)
    ident = alice.startCall("say", "said while offline")  # kept in the outbox
    resumed = await alice.resume()
    assert resumed["seq"] == 1  # the server had only the setUsername
    answer = await alice.answerTo(ident)
    assert answer == {"type": "result", "seq": 3, "id": ident, "value": None}
    await expectResult(alice, "say", "marker")
    for client in (alice, bob):
        await said(client, "alice", "marker")
        assert client.calls("displayUserMessage") == [["alice", "said while offline"],
                                                      ["alice", "marker"]]
    assert [f for f in alice.frames if f.get("id") == ident and f["type"] in ("result", "error")] == [answer]
    assert alice.duplicates == 0


@pytest_twisted.ensureDeferred
async def test_sayWhoseResultWasLostRunsOnce(chatServer):
    """A say that reached the server but whose result was lost is not run again on resume, even if the page sends it again; the result is replayed once."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    lost: list[bytes] = []
    alice._received = lambda payload, isBinary: lost.append(payload)  # the network loses it all
    ident = alice.startCall("say", "said once")
    await said(bob, "alice", "said once")
    await eventually(lambda: any(b'"result"' in p for p in lost), "the result to be sent")
    await dropAndWait(chatServer, alice)
    del alice._received
    assert not any(f.get("id") == ident for f in alice.frames)

    resumed = await alice.resume()
    assert resumed["seq"] == 2  # the server had run the say
    # A page that sends its frame again anyway: the server ignores it.
    alice.sendRaw(json.dumps({"type": "call", "id": ident, "method": "say",
                              "args": ["said once"], "seq": 2}).encode())
    answer = await alice.answerTo(ident)
    assert answer == {"type": "result", "seq": 3, "id": ident, "value": None}
    await expectResult(alice, "say", "marker")
    for client in (alice, bob):
        await said(client, "alice", "marker")
        assert client.calls("displayUserMessage") == [["alice", "said once"], ["alice", "marker"]]
    assert [f for f in alice.frames if f.get("id") == ident and f["type"] in ("result", "error")] == [answer]
    assert alice.duplicates == 0
    assert not alice.errors()


@pytest_twisted.ensureDeferred
async def test_resumeAfterGraceExpiryGetsNewSession(graceServer):
    """A page that comes back after the grace period gets a new session, saying why, and a new element that must log in again."""
    alice = await graceServer.login("alice")
    bob = await graceServer.login("bob")
    old = elementOf(graceServer, alice)
    oldSession = alice.session
    alice.drop()
    await bob.waitFor(lambda: left("alice") in bob.calls("displayMessage"), "alice's leave alert",
                      deadline=GRACE + DEADLINE)
    welcome = await alice.resume()
    assert welcome["type"] == "welcome", welcome
    assert welcome["session"] != oldSession
    assert "expired" in welcome["expired"], welcome
    new = elementOf(graceServer, alice)
    assert new is not old and new.username is None
    assert graceServer.room.chatters == [elementOf(graceServer, bob), new]
    assert graceServer.room.online() == ["bob"]
    assert oldSession not in graceServer.site.liveFactory.sessions
    await expectError(alice, "say", "hello?", name="NotLoggedIn", says="username")
    assert await expectResult(alice, "setUsername", "alice") == "alice"
    await bob.waitFor(lambda: bob.calls("displayMessage").count(joined("alice")) == 1)


@pytest_twisted.ensureDeferred
async def test_resumeUnknownSessionGetsNewSession(chatServer):
    """A hello resuming a session this server does not know is welcomed to a new session, with an expired reason."""
    page = await chatServer.connect(hello={"resume": {"session": "no-such-session", "seq": 3,
                                                      "streams": {"room": 7}}})
    assert page.welcome["session"] != "no-such-session"
    assert "expired" in page.welcome["expired"]
    assert await expectResult(page, "setUsername", "alice") == "alice"


@pytest_twisted.ensureDeferred
async def test_resumeReplacesOldConnection(chatServer):
    """A newer connection resuming a session closes the older one with 4001, and carries on as the same page."""
    patientClose(chatServer)
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    element = elementOf(chatServer, alice)
    second = await chatServer.connect(hello={"resume": {
        "session": alice.session, "seq": alice.receivedSeq, "streams": dict(alice.offsets)}})
    assert second.frames[0] == {"type": "resumed", "session": alice.session, "seq": 1}
    assert await alice.closed() == 4001
    assert elementOf(chatServer, alice) is element
    assert element._liveSession.connection is not None
    second.send({"type": "call", "seq": 2, "id": 5, "method": "say", "args": ["new connection"]})
    answer = await second.answerTo(5)
    assert answer["type"] == "result", answer
    await said(bob, "alice", "new connection")
    assert bob.calls("displayMessage") == [joined("bob")]
    assert chatServer.room.online() == ["alice", "bob"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("how", ["close-1000", "close-1001", "leave-frame"])
async def test_leavingOnPurposeEndsSessionAtOnce(chatServer, how):
    """A page that closes with 1000 or 1001, or sends a leave frame, ends its session at once (no grace period): its leave is announced."""
    patientClose(chatServer)
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    session = elementOf(chatServer, alice)._liveSession
    start = reactor.seconds()
    if how == "close-1000":
        alice.close(1000)
    elif how == "close-1001":
        alice.protocol.sendCloseFrame(code=1001, reasonUtf8=b"tab closed", isReply=False)
    else:
        alice.send({"type": "leave"})
        assert await alice.closed() == 1000
    await bob.waitFor(lambda: left("alice") in bob.calls("displayMessage"), "alice's leave alert")
    assert reactor.seconds() - start < LiveSettings().gracePeriod / 2
    assert session.ended
    assert session.ident not in chatServer.site.liveFactory.sessions
    assert chatServer.room.online() == ["bob"]
    assert not alice.errors()


@pytest_twisted.ensureDeferred
async def test_dropKeepsSessionUntilGraceExpires(graceServer):
    """A page that drops is not announced as leaving, and stays in the room, until its grace period ends."""
    alice = await graceServer.login("alice")
    bob = await graceServer.login("bob")
    session = await dropAndWait(graceServer, alice)
    dropped = reactor.seconds()
    assert graceServer.room.online() == ["alice", "bob"]
    await expectResult(bob, "say", "are you there?")
    await said(bob, "bob", "are you there?")
    assert left("alice") not in bob.calls("displayMessage")
    assert not session.ended
    await bob.waitFor(lambda: left("alice") in bob.calls("displayMessage"), "alice's leave alert",
                      deadline=GRACE + DEADLINE)
    assert reactor.seconds() - dropped >= GRACE - 0.05
    assert session.ended
    assert session.ident not in graceServer.site.liveFactory.sessions
    assert graceServer.room.online() == ["bob"]
    assert graceServer.room.chatters == [elementOf(graceServer, bob)]


@pytest_twisted.ensureDeferred
async def test_resumeThatCannotBeReplayedEndsSession(chatServer):
    """A resume from a frame the server cannot replay from ends the old session at once (announced) and welcomes a new one, saying why."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    session = await dropAndWait(chatServer, alice)
    alice.ledger.receivedSeq = 99  # claims frames the server never sent
    welcome = await alice.resume()
    assert welcome["type"] == "welcome", welcome
    assert "frame 99" in welcome["expired"]
    assert session.ended
    await bob.waitFor(lambda: left("alice") in bob.calls("displayMessage"), "alice's leave alert")
    assert chatServer.room.online() == ["bob"]
    assert elementOf(chatServer, alice).username is None


@pytest_twisted.ensureDeferred
async def test_answerComesAfterTheBroadcastItCaused(chatServer):
    """Room frames gathered for the end of the turn still reach the speaker before the answer to "say"."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    for n in range(3):
        await alice.call("say", f"message {n}")
    await bob.waitFor(lambda: len(bob.calls("displayUserMessage")) == 3, "bob to hear all three")
    kinds = [(f["type"], f.get("method")) for f in alice.frames if f["type"] in ("emit", "result")]
    said = [kind for kind in kinds if kind in (("emit", "displayUserMessage"), ("result", None))]
    assert said[-6:] == [("emit", "displayUserMessage"), ("result", None)] * 3, kinds
