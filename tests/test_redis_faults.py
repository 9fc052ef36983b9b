"""
Redis faults under traffic, as a black box: two real C{twistd chat-widget}
processes on one real C{redis-server}, real L{ChatClient} users saying
numbered messages at a steady pace, and Redis paused (SIGSTOP), or killed
and started again (with and without C{--appendonly yes}), then one process
killed.  Every message a sender was told was sent must reach every page
once, in one order; every other one must have been refused to its sender
(C{BackplaneDown}) and reach nobody; pages that move after the outage
resume their sessions.  Tests count (sent, refused, missing, doubled,
delivered though refused, out of order, new sessions), never time.
"""

from collections import Counter

import cluster as harness
import pytest
import pytest_twisted
from cluster import Cluster, RedisServer, backend, health, needRedis, pause
from conftest import eventually
from playwright.sync_api import expect
from test_browser import browser, openChat, unexpectedErrors  # noqa: F401 (fixtures)
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.protocols import portforward
from twisted.python.failure import Failure

from chatthing.backplane import BackplaneDown
from chatthing.backplane.redis import RedisBackplane, SharedStream
from chatthing.backplane.redis.outcomes import PUBLISH_TIMEOUT
from chatthing.backplane.redis.watchdog import HungRedisWatchdog
from chatthing.backplane.redis.replicas import ReplicaWait
from chatthing.live import RemoteError

#: Seconds between two messages of one user.
INTERVAL = 0.15

#: Seconds Redis stays paused: longer than a command's timeout (5 s), after
#: which bc7acba delivered a say on its process only, and again when Redis
#: woke up and ran it.
PAUSED = 6.0

#: Seconds every say may take to be answered, and every message to arrive,
#: once the traffic stops.
SETTLE = 20.0

redisServer = harness.redisServer
cluster = harness.cluster


class Traffic:
    """
    C{clients} saying numbered messages, each C{INTERVAL} seconds, and what
    became of each: C{"sent"}, C{"refused"} (C{BackplaneDown}) or another
    error.
    """

    def __init__(self, clients) -> None:
        self.clients = clients
        self.said: dict[str, list[str]] = {c.username: [] for c in clients}
        self.outcomes: dict[tuple[str, str], object] = {}
        self.answers: list = []

    async def run(self, seconds: float = 0.0, until=None, deadline: float = 20.0) -> bool:
        """
        Talk for C{seconds}, and then until C{until()} holds (at most
        C{deadline} seconds in all); whether it held.
        """
        start = reactor.seconds()
        while reactor.seconds() < start + seconds or (until is not None and not until()):
            if reactor.seconds() > start + deadline:
                return False
            for client in self.clients:
                self.say(client)
            await pause(INTERVAL)
        return True

    def say(self, client) -> None:
        key = (client.username, f"{client.username} #{len(self.said[client.username])}")
        self.said[client.username].append(key[1])

        def answered(result) -> None:
            if not isinstance(result, Failure):
                self.outcomes[key] = "sent"
            elif result.check(RemoteError) and result.value.name == "BackplaneDown":
                self.outcomes[key] = "refused"
            else:
                self.outcomes[key] = result.value

        self.answers.append(client.say(key[1]).addBoth(answered))

    def which(self, outcome: str) -> set[tuple[str, str]]:
        return {key for key, value in self.outcomes.items() if value == outcome}

    async def settle(self, pages) -> dict[str, int]:
        """
        Wait until every say is answered and every page heard every message
        sent; count what went wrong (none of it must have).
        """
        total = sum(len(texts) for texts in self.said.values())
        await eventually(lambda: len(self.outcomes) == total, f"the answers to {total} says", SETTLE)
        sent = self.which("sent")
        errors = [(key, value) for key, value in self.outcomes.items() if value not in ("sent", "refused")]
        if errors:
            print(f"{len(errors)} says failed otherwise: {errors[:5]}")
        try:
            await eventually(lambda: all(sent <= set(p.heard.messages) for p in pages),
                             "every page to hear every message sent", SETTLE)
        except TimeoutError:
            pass  # counted below
        return self.count(pages)

    def count(self, pages) -> dict[str, int]:
        sent, refused = self.which("sent"), self.which("refused")
        counts = Counter(sent=len(sent), refused=len(refused),
                         failedOtherwise=len(self.outcomes) - len(sent) - len(refused))
        reference = [m for m in pages[0].heard.messages if m in sent]
        for page in pages:
            heard = Counter(page.heard.messages)
            counts["missing"] += len(sent - set(heard))
            counts["doubled"] += sum(n - 1 for n in heard.values() if n > 1)
            counts["deliveredThoughRefused"] += len(refused & set(heard))
            counts["unknown"] += len(set(heard) - sent - refused)
            for who, texts in self.said.items():
                order = [t for w, t in page.heard.messages if w == who]
                counts["outOfOrder"] += sum(1 for a, b in zip(order, order[1:])
                                            if texts.index(a) > texts.index(b))
            mine = [m for m in page.heard.messages if m in sent]
            if mine != reference:
                counts["outOfOrder"] += sum(1 for a, b in zip(mine, reference) if a != b)
            counts["newSessions"] += len(page.heard.newSessions)
        return dict(counts)


def lossless(counts: dict[str, int]) -> dict[str, int]:
    """
    The counts that must be 0.
    """
    return {what: counts.get(what, 0) for what in
            ("failedOtherwise", "missing", "doubled", "deliveredThoughRefused", "unknown", "outOfOrder", "newSessions")}


NOTHING_WRONG = {"failedOtherwise": 0, "missing": 0, "doubled": 0, "deliveredThoughRefused": 0, "unknown": 0,
                 "outOfOrder": 0, "newSessions": 0}


@pytest_twisted.ensureDeferred
async def test_pausedRedisNeitherDoublesNorReordersNorLosesSilently(cluster):
    """
    Redis paused (SIGSTOP) for 6 s (past the 5 s a command may take)
    under traffic from users of two
    processes, then resumed: every message is heard by every page once, in
    one order, or refused to its sender (BackplaneDown) and heard by nobody;
    pages are told, and nobody gets a new session.
    """
    a, b = cluster.start(2)
    pages = [await cluster.chatClient(server, f"{server is a and 'a' or 'b'}{n}")
             for n in range(3) for server in (a, b)]
    traffic = Traffic(pages)
    await traffic.run(1.0)
    cluster.redis.pause()
    try:
        await traffic.run(PAUSED)
    finally:
        cluster.redis.resume()
    back = await traffic.run(1.0, until=lambda: all(p.heard.alertsWith("back in touch") for p in pages))
    await traffic.run(1.0)
    counts = await traffic.settle(pages)
    print("paused Redis:", counts)
    assert lossless(counts) == NOTHING_WRONG, counts
    assert counts["refused"] > 0 and counts["sent"] > 0, counts
    assert back, [p.heard.alerts for p in pages]
    for page in pages:
        assert len(page.heard.alertsWith("lost touch")) == 1, (page.username, page.heard.alerts)


@pytest.fixture(params=[True, False], ids=["appendonly", "no-persistence"])
def persistence(request):
    return request.param


@pytest_twisted.async_yield_fixture
async def restartCluster(persistence, startTwistd, tmp_path):
    """
    A L{Cluster} on its own Redis, with C{--appendonly yes} or nothing
    saved; everything stopped after the test.
    """
    needRedis()
    redis = RedisServer(tmp_path / "redis", appendonly=persistence)
    redis.start()
    group = Cluster(redis, startTwistd, tmp_path)
    try:
        yield group
        await group.stop()
    finally:
        redis.stop()


@pytest_twisted.ensureDeferred
async def test_redisRestartedThenAProcessDiesNothingLostAndPagesResume(restartCluster, persistence):
    """
    Redis killed under traffic and started again, then one of the two
    processes killed: what was said while Redis was down was refused to its
    sender (not left on one process), every message sent is heard by every
    page once in one order, and the dead process's pages resume their
    sessions on the other (0 new sessions).  Where Redis kept nothing, the
    loss of its entries is logged, and the moved pages see a new epoch.
    """
    cluster = restartCluster
    a, b = cluster.start(2)
    proxy = await cluster.proxy([a, b])
    pages = [await cluster.chatClient(proxy, f"user{n}") for n in range(4)]
    sessions = {p.username: p.live.session for p in pages}
    onA = [p for p in pages if proxy.backendFor(p) == backend(a)]
    assert len(onA) == 2, proxy.routes
    traffic = Traffic(pages)
    await traffic.run(1.0)
    cluster.redis.kill()
    await traffic.run(2.0)
    cluster.redis.start()
    back = await traffic.run(1.0, until=lambda: all(p.heard.alertsWith("back in touch") for p in pages))
    await traffic.run(1.0)
    cluster.kill(a)
    moved = await traffic.run(1.0, until=lambda: all(
        p.connected and proxy.backendFor(p) == backend(b) for p in onA))
    await traffic.run(1.0)
    counts = await traffic.settle(pages)
    print("Redis restarted, then a process killed:", counts)
    assert lossless(counts) == NOTHING_WRONG, counts
    assert counts["refused"] > 0 and counts["sent"] > 0, counts
    assert back and moved, [p.heard.alerts for p in pages]
    assert (await health(b))[0] == 200
    for page in pages:
        assert page.live.session == sessions[page.username], page.username
    if not persistence:  # the loss is logged
        assert "Redis had lost its entries" in a.log() + b.log()  # the first to floor the stream
    # Every page was told, by a changed epoch, if Redis lost its data (those
    # connected then by an "epoch" frame); else each saw one epoch.
    epochs = {p.username: len(p.live.epochs) for p in pages}
    assert epochs == {p.username: 1 if persistence else 2 for p in pages}, epochs


# One backplane in this process, on a real Redis


async def startBackplane(redis) -> RedisBackplane:
    backplane = RedisBackplane(redis.url, gracePeriod=30.0)
    backplane.startService()
    await eventually(lambda: backplane.connected, "the backplane to connect")
    return backplane


async def roomHeard(backplane: RedisBackplane) -> tuple[SharedStream, list]:
    """
    The stream of C{room:r}, loaded, and the list of the calls heard on it,
    once C{said("before")} published on it is heard.
    """
    stream = backplane.stream("room:r", "room", 100)
    await stream.ready()
    await eventually(lambda: stream.loaded, "the stream to load")
    heard: list = []
    stream.observe(lambda method, args: heard.append(args))
    await stream.publish([("said", ["before"])])
    await eventually(lambda: heard == [["before"]], "the call before the fault")
    return stream, heard


@pytest_twisted.ensureDeferred
async def test_aPublicationRefusedWhileRedisIsPausedNeverAppears(redisServer):  # noqa: F811
    """
    A publication sent to a paused Redis is refused to its sender
    (BackplaneDown) within its timeout, the backplane takes Redis for hung
    (once), and when Redis wakes up and runs the script buffered in its
    socket, the script refuses it: nothing is added to the stream, nothing
    delivered.
    """
    backplane = await startBackplane(redisServer)
    try:
        stream, heard = await roomHeard(backplane)
        redisServer.pause()
        try:
            outcome = await stream.publish([("said", ["during"])]).addErrback(lambda f: f.value)
            assert isinstance(outcome, BackplaneDown), outcome
            await eventually(lambda: not backplane.connected, "Redis to be taken for hung")
            refused = await stream.publish([("said", ["at once"])]).addErrback(lambda f: f.value)
            assert isinstance(refused, BackplaneDown), refused
        finally:
            redisServer.resume()
        await eventually(lambda: backplane.connected, "the backplane to catch up")
        await stream.publish([("said", ["after"])])
        await eventually(lambda: heard[-1] == ["after"], "the call after the pause")
        assert heard == [["before"], ["after"]]
        assert redisServer.command("XLEN", "chatthing:stream:room:r").strip() == b":2"
        assert backplane.connection.watchdog.hung == 1
    finally:
        await backplane.stopService()


# The watchdog and a publication's outcome, on a fake clock


class FakeCommands:
    """
    What the watchdog reads of a command connection: the answers awaited.
    """

    def __init__(self) -> None:
        self.replyQueue = type("Queue", (), {"waiting": []})()
        self.sent: list = []

    def execute_command(self, *command):
        d = Deferred()
        self.sent.append(command)
        self.replyQueue.waiting.append(d)
        return d

    def eval(self, source, keys, args):
        return self.execute_command("EVAL", keys, args)

    def answer(self, reply) -> None:
        self.replyQueue.waiting.pop(0).callback(reply)


class FakeConnection:
    """
    What the watchdog and a stream use of a L{RedisConnection}: a fault
    injected by hand.
    """

    def __init__(self, clock: Clock) -> None:
        self.reactor = clock
        self.commands = FakeCommands()
        self.connected = True
        self.url = type("URL", (), {"text": "redis://fake"})()
        self.told: list[str] = []
        self.watchdog = HungRedisWatchdog(self, clock)
        self.replicaWait = ReplicaWait(clock, 0)
        self.prefix = "t:"

    def hung(self, commands) -> None:
        self.told.append("hung")
        self.connected = False

    def answering(self, commands) -> None:
        self.told.append("answering")
        self.connected = True

    def abort(self, commands) -> None:
        self.told.append("abort")

    proc = "p"
    origins = 0

    def nextOrigin(self) -> str:
        self.origins += 1
        return f"p/{self.origins}"

    def script(self, source, keys, args):
        return self.commands.eval(source, keys, args)

    def call(self, *command):
        return self.commands.execute_command(*command)


def test_watchdogTakesASilentRedisForHungButNotAStalledProcess():
    """Hung: the same answer awaited over 1 s of the watchdog's looks (then answering again when it
    comes); not hung when the process itself stalled 2 s and the answer is read right after."""
    clock = Clock()
    connection = FakeConnection(clock)
    connection.watchdog.startService()
    commands = connection.commands
    clock.advance(0.25)  # it asks TIME: one answer awaited
    assert [c[0] for c in commands.sent] == ["TIME"]
    clock.pump([0.25] * 6)
    assert connection.told == ["hung"]
    commands.answer(["1700000000", "0"])
    clock.advance(0.25)
    assert connection.told == ["hung", "answering"]
    # Now this process stalls for 2 s while Redis answers: no false alarm.
    clock.pump([0.25, 0.25])  # a TIME is sent, then seen awaited
    assert commands.replyQueue.waiting
    # Its answer comes during the stall, and is read after the timers due
    # (the watchdog's look among them) have run.
    clock.callLater(2.0, commands.answer, ["1700000002", "0"])
    clock.advance(2.0)
    for _ in range(8):  # the answers that came meanwhile are read, and more come
        while commands.replyQueue.waiting:
            commands.answer(["1700000002", "0"])
        clock.advance(0.25)
    assert connection.told == ["hung", "answering"]
    assert connection.watchdog.hung == 1


def test_aSlowAnswerIsAwaitedWhileRedisAnswersAndRefusedOnceItDoesNot():
    """A publication not answered within 1.5 s is awaited while Redis is connected (its answer says
    what became of it), and refused (BackplaneDown) once Redis is taken for hung."""
    clock = Clock()
    connection = FakeConnection(clock)
    stream = SharedStream(connection, "t:stream:r", "room", 10, 60)
    outcomes: list = []
    stream.publish([("said", ["slow"])]).addBoth(outcomes.append)
    clock.advance(PUBLISH_TIMEOUT + 1.0)
    assert outcomes == []
    connection.commands.answer(["1"])
    assert outcomes == [None]
    stream.publish([("said", ["lost"])]).addBoth(outcomes.append)
    connection.connected = False
    clock.advance(PUBLISH_TIMEOUT)
    assert isinstance(outcomes[-1], Failure) and outcomes[-1].check(BackplaneDown), outcomes
    outcomes[-1].trap(BackplaneDown)


# What a browser's user sees


def test_pageShowsNotSentWhileRedisIsPausedThenSendsAgain(openChat, startTwistd, redisServer):  # noqa: F811
    """
    Redis paused: alice's page says the server lost touch, and what she says
    is not sent ("Not sent: ...", the text kept in the field) and reaches
    nobody; Redis resumed: she sends the same text again, and both pages
    show it once.
    """
    shared = ("--redis", redisServer.url, "--grace-period", "20")
    first, second = startTwistd(*shared), startTwistd(*shared)
    alice, bob = openChat(url=first.url), openChat(url=second.url)
    alice.login("alice")
    bob.login("bob")
    alice.expectLine("user bob has joined the room")
    redisServer.pause()
    try:
        alice.expectLine("lost touch with the others")
        # Each process finds Redis silent by its own watchdog: until bob's
        # has, it has nothing to be back in touch from.
        bob.expectLine("lost touch with the others")
        field_ = alice.page.locator('[name="userMessage"]')
        field_.fill("said while Redis sleeps")
        field_.press("Enter")
        expect(alice.page.locator('[name="sendError"]')).to_have_text(
            "Not sent: this server cannot reach the others right now; send it again in a moment")
        expect(field_).to_have_value("said while Redis sleeps")
    finally:
        redisServer.resume()
    alice.expectLine("back in touch with the others")
    bob.expectLine("back in touch with the others")
    field_.press("Enter")
    expect(field_).to_have_value("")
    bob.expectLine("alice: said while Redis sleeps")
    alice.expectLine("alice: said while Redis sleeps")
    assert unexpectedErrors(alice) == [] and unexpectedErrors(bob) == []


def test_aPublicationWhoseConnectionWasLostIsSettledByWhatRedisHolds():
    """The connection lost before Redis's answer: the sender is told it was sent if the entry comes
    back on the stream (Redis had taken it, and kept it), and refused (BackplaneDown) if a catch-up
    after the loss reads the stream without it; neither before."""
    import txredisapi

    clock = Clock()
    connection = FakeConnection(clock)
    stream = SharedStream(connection, "t:stream:r", "room", 10, 60)
    stream.loaded = True
    heard: list = []
    stream.observe(lambda method, args: heard.append(args))
    outcomes: dict[str, object] = {}
    for text in ("kept", "gone"):
        stream.publish([("said", [text])]).addBoth(lambda r, text=text: outcomes.__setitem__(text, r))
    for _ in range(2):
        connection.commands.replyQueue.waiting.pop(0).errback(txredisapi.ConnectionError("Lost connection"))
    clock.advance(PUBLISH_TIMEOUT + 1.0)
    assert outcomes == {}
    stream.catchUp()
    connection.commands.answer([["0-1", ["c", '["said",["kept"]]', "o", "p/1"]]])
    assert heard == [["kept"]]
    assert outcomes["kept"] is None
    assert isinstance(outcomes["gone"], Failure) and outcomes["gone"].check(BackplaneDown)
    outcomes["gone"].trap(BackplaneDown)


@pytest_twisted.ensureDeferred
async def test_aLoginRefusedWhileRedisIsPausedNeverHoldsTheName(cluster):
    """
    A login sent to a paused Redis (before the watchdog takes it for hung)
    is refused to its page after the command's timeout; when Redis wakes up
    and runs the script buffered in its socket, the script is past its
    deadline and holds nothing: the name is free, another page may take it
    and let go of it, and the refused page logs in with it.
    """
    a, = cluster.start(1)
    amy = await cluster.page(a, "amy")
    zed = await cluster.page(a)
    other = await cluster.page(a)
    names = ("HLEN", "chatthing:names")
    assert cluster.redis.command(*names).strip() == b":1"
    cluster.redis.pause()
    try:
        refused = await zed.call("setUsername", "zed")
    finally:
        cluster.redis.resume()
    # Sent to Redis and unanswered (not refused at once as "Logins are paused").
    assert refused["type"] == "error" and "could not reach its store" in refused["error"]["message"], refused
    await caughtUp(a)
    assert cluster.redis.command(*names).strip() == b":1", "the refused login holds its name"
    taken = await other.call("setUsername", "zed")
    assert taken["type"] == "result", taken
    other.close()
    await other.closed(5)
    for attempt in range(100):  # until the leave of the other page is done
        answer = await zed.call("setUsername", "zed")
        if answer["type"] == "result":
            break
        await pause(0.1)
    assert answer == {**answer, "type": "result"}, answer
    assert (await amy.call("setUsername", "amy"))["type"] == "result"
    assert cluster.redis.command(*names).strip() == b":2"


async def caughtUp(server) -> None:
    """
    Wait until C{server} has connected to Redis a second time (caught up
    after a pause: what Redis ran when it woke up is done).
    """
    await eventually(lambda: server.log().count("connected to Redis at") >= 2, "the server to catch up")


@pytest_twisted.ensureDeferred
async def test_aLeaveWhileRedisIsPausedLetsGoOfTheNameOnceBack(cluster):
    """
    A page that leaves while Redis is paused: its leave, sent to Redis, is
    past its deadline when Redis wakes up and does nothing then; the
    process lets go of the name when it catches up, so the name is free.
    """
    a, = cluster.start(1)
    amy = await cluster.page(a, "amy")
    other = await cluster.page(a)
    cluster.redis.pause()
    try:
        amy.close()
        await amy.closed(5)
        # Past the leave's deadline: the server gave up on it.
        await eventually(lambda: "could not let go of amy's name" in a.log(), "the leave to fail")
    finally:
        cluster.redis.resume()
    await caughtUp(a)
    assert cluster.redis.command("HLEN", "chatthing:names").strip() == b":0"
    assert (await other.call("setUsername", "amy"))["type"] == "result"


# A subscriber connection that hears nothing


class _QuietClient(portforward.ProxyClient):
    def dataReceived(self, data: bytes) -> None:
        if not self.peer.silent:
            super().dataReceived(data)


class _QuietClientFactory(portforward.ProxyClientFactory):
    protocol = _QuietClient


class _QuietServer(portforward.ProxyServer):
    """
    One connection through a L{quietProxy}: L{silent}, it passes nothing
    either way and stays open (a network that dropped it without a word).
    """

    clientProtocolFactory = _QuietClientFactory
    silent = False

    def connectionMade(self) -> None:
        self.seen = b""
        self.factory.servers.append(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.seen += data[:100]
        if not self.silent:
            super().dataReceived(data)


def quietProxy(port: int):
    """
    A TCP proxy to C{port} on an ephemeral loopback port, whose connections
    (C{.factory.servers}) can each be made silent.
    """
    factory = portforward.ProxyFactory("127.0.0.1", port)
    factory.protocol = _QuietServer
    factory.servers = []
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_aSubscriberThatHearsNothingIsNoticedAndMadeAgain(redisServer):  # noqa: F811
    """
    The subscriber connection goes silent (no data either way, still open)
    while the command connection works: a call published then is heard by
    this process once its heartbeat goes unheard (1 miss), the connections
    are made again and the stream caught up; nothing doubled.
    """
    proxy = quietProxy(redisServer.port)
    backplane = RedisBackplane(f"redis://127.0.0.1:{proxy.getHost().port}/0", gracePeriod=30.0)
    backplane.startService()
    try:
        await eventually(lambda: backplane.connected, "the backplane to connect")
        stream, heard = await roomHeard(backplane)
        subscribers = [s for s in proxy.factory.servers if b"SUBSCRIBE" in s.seen]
        assert len(subscribers) == 1, [s.seen for s in proxy.factory.servers]
        subscribers[0].silent = True
        await stream.publish([("said", ["while deaf"])])
        await eventually(lambda: heard == [["before"], ["while deaf"]], "the call to be heard after all")
        await eventually(lambda: backplane.connected, "the backplane to be connected again")
        await stream.publish([("said", ["after"])])
        await eventually(lambda: len(heard) == 3, "the call after")
        assert heard == [["before"], ["while deaf"], ["after"]]
        assert backplane.connection.subscriberWatch.missed == 1
        assert backplane.connection.watchdog.hung == 0
    finally:
        await backplane.stopService()
        await proxy.stopListening()


def _establishedTo(port: int) -> int:
    """This machine's TCP connections established to C{port} on loopback (/proc/net/tcp)."""
    lines = open("/proc/net/tcp").read().splitlines()[1:]
    return sum(1 for line in lines
               if line.split()[2].endswith(f":{port:04X}") and line.split()[3] == "01")


@pytest_twisted.ensureDeferred
async def test_aStreamOpenedWhileTheSubscriberIsSetUpHearsWhatComes(redisServer):  # noqa: F811
    """
    A room opened while the process's connections to Redis are being set up
    (Redis has accepted them and not answered yet) is subscribed to: what is
    published on it afterwards is heard live (on c7cfd26 its channel was left
    out of the subscription, and it heard nothing).
    """
    redisServer.pause()
    backplane = RedisBackplane(redisServer.url, gracePeriod=30.0)
    other = None
    try:
        backplane.startService()
        await eventually(lambda: _establishedTo(redisServer.port) >= 2, "both connections accepted")
        stream = backplane.stream("room:late", "room", 100)
        heard: list = []
        stream.observe(lambda method, args: heard.append(args))
        redisServer.resume()
        await eventually(lambda: backplane.connected and stream.loaded, "the backplane to connect")
        other = await startBackplane(redisServer)
        await other.stream("room:late", "room", 100).publish([("said", ["after"])])
        await eventually(lambda: heard == [["after"]], "the call published after")
    finally:
        redisServer.resume()
        for each in (backplane, other):
            if each is not None:
                await each.stopService()
