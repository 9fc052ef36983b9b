"""
Several C{twistd chat-widget} processes sharing their rooms through one
Redis (C{--redis}), tested as a black box: real processes, a real
C{redis-server}, real WebSocket clients, and a TCP balancer in front of the
processes when a test kills one (see C{tests/cluster.py}).

- Clients of different processes hear each other, in one same order; names
  are unique across processes; presence and history span them.
- A global alert sent to one process reaches the pages of every process.
- A process killed mid-chat: its pages come back through the balancer to
  another process and lose nothing; a page that does not come back is
  announced as gone within a bounded time.
- Redis stopped mid-chat: each process says so on C{/healthz} and to its
  pages, refuses what they say meanwhile, and recovers when Redis is back.

Every wait is for a condition, with a deadline; the only pauses pace the
simulated users (and how long Redis stays down).
"""

import subprocess
import sys
from collections import Counter

import cluster as harness
import pytest
import pytest_twisted
from cluster import (
    GRACE_PERIOD,
    Cluster,
    FailoverProxy,
    RedisServer,
    backend,
    health,
    needRedis,
    pause,
    postAlert,
)
from conftest import eventually, subprocessEnvironment, withDeadline
from twisted.internet import reactor, threads
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.python.failure import Failure

from chatthing.client import ChatClient
from chatthing.live import RemoteError

#: The harness's fixtures, for this module's tests.
cluster = harness.cluster
redisServer = harness.redisServer

#: Seconds to wait for something that crosses processes.
DEADLINE = 10.0

#: Seconds a process killed without a word may take to be noticed: its
#: users are announced as gone within this (grace period 3 s, heartbeat ~3 s).
GONE_DEADLINE = 20.0

#: Seconds a process may take to notice Redis has gone, or has come back.
BACKPLANE_DEADLINE = 20.0


async def allOf(clients, condition, what: str, deadline: float = DEADLINE):
    """
    Wait until C{condition(client)} holds for every one of C{clients}.
    """
    def check():
        return all(condition(client) for client in clients)

    try:
        return await eventually(check, what, deadline)
    except TimeoutError:
        failing = "\n".join(describe(client) for client in clients if not condition(client))
        raise AssertionError(f"waited {deadline}s for {what}; not yet for:\n{failing}") from None


def describe(client) -> str:
    """
    What C{client} has heard, for failure messages.
    """
    heard = client.heard
    return (f"  {client.username} ({client.live.state}): presence {heard.presence}, "
            f"{len(heard.messages)} messages, the last {heard.messages[-3:]}, "
            f"alerts {heard.alerts[-6:]}, new sessions {len(heard.newSessions)}")


def checkOneOrder(clients, said: dict[str, list[str]]) -> None:
    """
    Every client heard every message of C{said} (speaker: texts, in the
    order said) exactly once, each speaker's in the order said, and all
    heard them in one same order.
    """
    expected = Counter((who, text) for who, texts in said.items() for text in texts)
    for client in clients:
        heard = Counter(client.heard.messages)
        missing = expected - heard
        extra = heard - expected
        assert not missing and not extra, (
            f"{client.username} missed {sorted(missing)[:10]} ({sum(missing.values())} in all) "
            f"and got unexpected or repeated {sorted(extra)[:10]} ({sum(extra.values())} in all)")
        for who, texts in said.items():
            assert [t for w, t in client.heard.messages if w == who] == texts, (
                f"{client.username} heard {who}'s messages out of order")
    first = clients[0]
    for client in clients[1:]:
        if client.heard.messages != first.heard.messages:
            at = next(i for i, (x, y) in enumerate(zip(first.heard.messages, client.heard.messages))
                      if x != y)
            raise AssertionError(
                f"{first.username} and {client.username} heard the messages in different orders, "
                f"from #{at}: {first.heard.messages[at:at + 4]} vs {client.heard.messages[at:at + 4]}")


async def settle(deferreds, what: str, deadline: float = DEADLINE) -> None:
    """
    Wait for every one of C{deferreds} (calls' answers); fail naming those
    that failed.
    """
    outcomes: dict[int, object] = {}
    for n, d in enumerate(deferreds):
        d.addBoth(lambda result, n=n: outcomes.__setitem__(n, result))
    try:
        await eventually(lambda: len(outcomes) == len(deferreds), f"the answers to {what}", deadline)
    except TimeoutError:
        raise AssertionError(f"{len(deferreds) - len(outcomes)} of {len(deferreds)} {what} "
                             f"were not answered within {deadline}s") from None
    failures = [(n, result.value) for n, result in sorted(outcomes.items())
                if isinstance(result, Failure)]
    assert not failures, f"{len(failures)} of {len(deferreds)} {what} failed: {failures[:5]}"


class Transcript:
    """
    What each of C{clients} said, in order, and the answers still to come;
    then L{heardByAll}: every client heard all of it once, in one order.
    """

    def __init__(self, clients) -> None:
        self.clients = clients
        self.said: dict[str, list[str]] = {c.username: [] for c in clients}
        self.answers: list = []

    def say(self, client, text: str) -> None:
        self.said[client.username].append(text)
        self.answers.append(client.say(text))

    def everyoneSays(self, label: str) -> None:
        for client in self.clients:
            self.say(client, f"{client.username} {label}")

    async def heardByAll(self, deadline: float = DEADLINE) -> None:
        await settle(self.answers, "says", deadline)
        total = sum(len(texts) for texts in self.said.values())
        await allOf(self.clients, lambda c: len(c.heard.messages) >= total,
                    f"every client to hear all {total} messages", deadline)
        checkOneOrder(self.clients, self.said)


async def runCli(*args: str) -> subprocess.CompletedProcess:
    """
    Run C{python -m chatthing.cli ARGS} in a thread, so pages keep receiving.
    """
    return await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "chatthing.cli", *args],
        env=subprocessEnvironment(), capture_output=True, text=True, timeout=60,
    )


# The harness itself (no --redis needed)


def test_redisServerStopsAndStartsOnTheSamePort(tmp_path):
    """The harness's RedisServer answers PING, stops by PID, starts again on the same port (empty), and is killed."""
    needRedis()
    redis = RedisServer(tmp_path / "redis")
    try:
        redis.start()
        port = redis.port
        assert redis.url == f"redis://127.0.0.1:{port}/0"
        assert redis.ping()
        assert redis.command("SET", "greeting", "hello").startswith(b"+OK")
        redis.stop()
        assert not redis.running and not redis.ping()
        redis.start()
        assert redis.port == port and redis.ping()
        assert redis.command("GET", "greeting").startswith(b"$-1")  # nothing was saved
        redis.kill()
        assert not redis.running and not redis.ping()
    finally:
        redis.stop()


@pytest_twisted.ensureDeferred
async def test_proxyBalancesAndFailsOver(startTwistd):
    """The harness's FailoverProxy sends connections round-robin, serves pages and WebSockets, and skips a dead backend."""
    a, b = startTwistd(), startTwistd()
    proxy = await FailoverProxy([backend(a), backend(b)]).start()
    clients = []
    try:
        first = await withDeadline(ChatClient.connect(proxy.wsUrl, "first"))
        clients.append(first)
        second = await withDeadline(ChatClient.connect(proxy.wsUrl, "second"))
        clients.append(second)
        assert proxy.backendFor(second) == backend(b)
        heard = []
        moved = await withDeadline(ChatClient.connect(
            proxy.wsUrl, "moved", onMessage=lambda who, text: heard.append((who, text))))
        clients.append(moved)
        assert proxy.backendFor(moved) == backend(a)  # round-robin: a, b, a
        # Plain HTTP goes through too (to b, the next).
        assert await health(proxy.url) == (200, "ok")
        assert proxy.routes[-1][1] == backend(b)
        a.process.kill()
        a.process.wait(10)
        # Without a shared backplane, b knows nothing of the session: the
        # client logs in again there, under the same name.
        await eventually(lambda: moved.connected and proxy.backendFor(moved) == backend(b),
                         "the client to reach b")
        assert backend(a) in proxy.refused
        await withDeadline(moved.say("made it"))
        await eventually(lambda: ("moved", "made it") in heard, "its message")
    finally:
        for client in clients:
            await withDeadline(client.close(), 5)
        await proxy.stop()


# Clients of several processes


@pytest_twisted.ensureDeferred
async def test_everyoneHearsEveryoneInOneOrder(cluster):
    """Clients of three processes hear every message, each once, in one same order, as soon as they are logged in."""
    servers = cluster.start(3)
    names = ["alice", "bob", "carol"]
    clients = [await cluster.chatClient(server, name) for server, name in zip(servers, names)]
    transcript = Transcript(clients)
    for round_ in range(10):
        transcript.everyoneSays(f"says {round_}")
    await transcript.heardByAll()
    # The joins of later clients crossed processes too.
    await allOf(clients[:2], lambda c: " * user carol has joined the room" in c.heard.alerts,
                "carol's join to be announced on the other processes")


@pytest_twisted.ensureDeferred
async def test_presenceListsUsersOfEveryProcess(cluster):
    """Presence lists the users of every process, sorted, and drops a user who leaves on another process."""
    servers = cluster.start(3)
    names = ["Carol", "alice", "bob"]
    clients = [await cluster.chatClient(server, name) for server, name in zip(servers, names)]
    everyone = ["alice", "bob", "Carol"]  # sorted as people read them
    await allOf(clients, lambda c: c.heard.presence == everyone, f"presence to be {everyone}")
    await withDeadline(clients[2].close())
    rest = clients[:2]
    await allOf(rest, lambda c: c.heard.presence == ["alice", "Carol"], "presence without bob")
    await allOf(rest, lambda c: " * user bob has left the room" in c.heard.alerts, "bob's leave")


@pytest_twisted.ensureDeferred
async def test_usernamesAreUniqueAcrossProcesses(cluster):
    """A name taken on one process is refused on another (UsernameTaken, any case, also by /nick), and free again once its user left."""
    a, b, c = cluster.start(3)
    alice = await cluster.chatClient(a, "alice")
    for name, where in [("alice", b), ("ALICE", c), ("  Alice ", b)]:
        with pytest.raises(RemoteError) as caught:
            await cluster.chatClient(where, name)
        assert caught.value.name == "UsernameTaken", (name, caught.value)
    bob = await cluster.chatClient(b, "bob")
    with pytest.raises(RemoteError) as caught:
        await withDeadline(bob.say("/nick Alice"))
    assert caught.value.name == "UsernameTaken"

    # The same name asked for on two processes at once: exactly one gets it.
    for n in range(5):
        results = await withDeadline(DeferredList([
            ensureDeferred(cluster.chatClient(a, f"racer{n}")),
            ensureDeferred(cluster.chatClient(c, f"RACER{n}")),
        ], consumeErrors=True))
        won = [ok for ok, _ in results]
        assert won.count(True) == 1, (n, results)
        loser = next(value for ok, value in results if not ok)
        assert loser.check(RemoteError) and loser.value.name == "UsernameTaken", loser

    await withDeadline(alice.close())
    await allOf([bob], lambda c: " * user alice has left the room" in c.heard.alerts, "alice's leave")

    async def claim():
        try:
            return await cluster.chatClient(c, "Alice")
        except RemoteError as e:
            assert e.name == "UsernameTaken", e
            return None

    end = reactor.seconds() + DEADLINE
    while (again := await claim()) is None:
        assert reactor.seconds() < end, "the name alice was not freed on another process"
        await pause(0.2)
    assert again.username == "Alice"


@pytest_twisted.ensureDeferred
async def test_historyComesFromAnotherProcess(cluster):
    """A page opening the room on process B gets, in displayHistory, what was said (and done) on process A before."""
    a, b = cluster.start(2)
    alice = await cluster.chatClient(a, "alice")
    before = int(reactor.seconds() * 1000)
    for n in range(3):
        await withDeadline(alice.say(f"earlier {n}"))
    await withDeadline(alice.say("/me waves"))
    after = int(reactor.seconds() * 1000)
    dave = await cluster.chatClient(b, "dave")
    await allOf([dave], lambda c: c.heard.history, "dave's history")
    entries = dave.heard.history
    assert [entry[:3] for entry in entries] == [
        ["message", "alice", "earlier 0"], ["message", "alice", "earlier 1"],
        ["message", "alice", "earlier 2"], ["action", "alice", "waves"],
    ], entries
    times = [entry[3] for entry in entries]
    assert all(isinstance(t, int) for t in times), times
    assert before - 2000 <= times[0] and times == sorted(times) and times[-1] <= after + 2000, (before, times, after)
    assert dave.heard.messages == []  # history, not live messages
    # And what is said after comes live, both ways.
    await withDeadline(dave.say("hi alice"))
    await allOf([alice], lambda c: ("dave", "hi alice") in c.heard.messages, "dave's message on A")


@pytest_twisted.ensureDeferred
async def test_aPageWelcomedBeforeItsProcessReachesRedisStillGetsTheHistory(cluster):
    """
    A page that opens the room on a process still connecting to Redis (it
    was starting) waits for the room's first read, and is shown what was
    said before in displayHistory, not as live lines once the read comes;
    it is told the store's epoch, which its welcome could not name.
    """
    a, = cluster.start(1)
    alice = await cluster.chatClient(a, "alice")
    for n in range(3):
        await withDeadline(alice.say(f"earlier {n}"))
    cluster.redis.pause()
    try:
        b, = cluster.start(1)  # it listens, and cannot talk to Redis yet
        dave = await cluster.page(b)
    finally:
        cluster.redis.resume()
    await eventually(lambda: dave.calls("displayHistory"), "dave's history")
    (entries,), = dave.calls("displayHistory")
    assert [entry[:3] for entry in entries] == [["message", "alice", f"earlier {n}"] for n in range(3)]
    assert dave.calls("displayUserMessage") == []
    # Its welcome could not name the store's epoch: it is told it once known.
    assert "epoch" not in dave.welcome
    epochs = [f["epoch"] for f in dave.frames if f["type"] == "epoch"]
    assert epochs == [alice.live.epochs[-1]], (epochs, alice.live.epochs)


@pytest_twisted.ensureDeferred
async def test_roomsAreSharedRoomByRoom(cluster):
    """A room's messages reach that room's pages on every process, and no other room's."""
    a, b = cluster.start(2)
    alice = await cluster.chatClient(a, "alice", room="tea")
    bob = await cluster.chatClient(b, "bob", room="tea")
    carol = await cluster.chatClient(b, "carol")  # the lobby
    dan = await cluster.chatClient(a, "dan")  # the lobby
    await withDeadline(alice.say("in tea"))
    await withDeadline(dan.say("in the lobby"))
    await allOf([bob], lambda c: ("alice", "in tea") in c.heard.messages, "alice's message in tea on B")
    await allOf([carol], lambda c: ("dan", "in the lobby") in c.heard.messages, "dan's message in the lobby on B")
    assert carol.heard.messages == [("dan", "in the lobby")]
    assert bob.heard.messages == [("alice", "in tea")]
    await allOf([bob], lambda c: c.heard.presence == ["alice", "bob"], "tea's presence on B")
    await allOf([carol], lambda c: c.heard.presence == ["carol", "dan"], "the lobby's presence on B")


@pytest_twisted.ensureDeferred
async def test_firstPageOfARoomOnAProcessMissesNothing(cluster):
    """
    The first page to open a room on a process (the room already in use on
    another) hears everything said there once it has logged in: its own
    join, the presence list, the others' messages; in several rooms.
    """
    a, b = cluster.start(2)
    pairs = []
    for n in range(4):
        room = f"room{n}"
        here = await cluster.chatClient(a, f"alice{n}", room=room)
        there = await cluster.chatClient(b, f"bob{n}", room=room)  # the room's first page on B
        pairs.append((here, there))
        await withDeadline(here.say(f"hello {room}"))
    for n, (here, there) in enumerate(pairs):
        await allOf([there], lambda c, n=n: (f"alice{n}", f"hello room{n}") in c.heard.messages,
                    f"alice{n}'s message on B")
        await allOf([there], lambda c, n=n: c.heard.presence == [f"alice{n}", f"bob{n}"],
                    f"room{n}'s presence on B")
        await allOf([here], lambda c, n=n: c.heard.presence == [f"alice{n}", f"bob{n}"],
                    f"room{n}'s presence on A")
        for page in (here, there):
            assert f" * user bob{n} has joined the room" in page.heard.alerts, describe(page)
        assert there.heard.messages == [(f"alice{n}", f"hello room{n}")], describe(there)


# Global alerts


@pytest_twisted.ensureDeferred
async def test_globalAlertReachesEveryProcess(cluster):
    """An alert sent to one process's admin endpoint (POST /alert, or `chatthing alert`) reaches the pages of every process, once."""
    servers = cluster.start(3, admin=True)
    clients = [await cluster.chatClient(server, f"user{n}") for n, server in enumerate(servers)]
    lurker = await cluster.page(servers[2])  # not logged in
    status, answer = await postAlert(servers[0], "Maintenance at noon", Cluster.TOKEN)
    assert status == 200, answer
    await allOf(clients, lambda c: "Maintenance at noon" in c.heard.alerts, "the alert on every process")
    await lurker.waitFor(lambda: ["Maintenance at noon"] in lurker.calls("displayMessage"), "the alert on the lurker")

    result = await runCli("alert", "Back at one", "--url", servers[1].adminUrl,
                          "--token-file", str(cluster.tokenFile))
    assert result.returncode == 0, result
    await allOf(clients, lambda c: "Back at one" in c.heard.alerts, "the second alert on every process")
    for client in clients:
        operator = [a for a in client.heard.alerts if not a.startswith(" * user ")]
        assert operator == ["Maintenance at noon", "Back at one"], (client.username, operator)


# A process killed


@pytest_twisted.ensureDeferred
async def test_killedProcessClientsFailOverLosingNothing(cluster):
    """
    Six clients on three processes behind a balancer chat; one process is
    killed (SIGKILL): its clients come back through the balancer to the
    others, still logged in, in the same session, and every message said
    before, during and after is heard once by every client, in one order;
    nobody is announced as having left.
    """
    servers = cluster.start(3)
    proxy = await cluster.proxy(servers)
    names = [f"user{n}" for n in range(6)]
    clients = [await cluster.chatClient(proxy, name) for name in names]
    victim = servers[0]
    onVictim = [c for c in clients if proxy.backendFor(c) == backend(victim)]
    assert len(onVictim) == 2, proxy.routes
    sessions = {c.username: c.live.session for c in clients}
    await allOf(clients, lambda c: c.heard.presence == names, "everyone in presence")

    transcript = Transcript(clients)
    everyoneSays = transcript.everyoneSays
    for n in range(5):
        everyoneSays(f"before {n}")
        await pause(0.1)
    everyoneSays("just before")  # in flight as it dies
    killedAt = reactor.seconds()
    cluster.kill(victim)
    # Talk on past the grace period and the heartbeat, when a wrongful
    # "has left" would come.
    n = 0
    while reactor.seconds() < killedAt + GRACE_PERIOD + 7:
        everyoneSays(f"after {n}")
        n += 1
        await pause(0.2)

    await transcript.heardByAll(20)
    for client in onVictim:
        assert client.connected
        assert proxy.backendFor(client) in (backend(servers[1]), backend(servers[2])), proxy.routes
    for client in clients:
        assert client.heard.newSessions == [], (
            f"{client.username} got a new session (it logged in again): {client.heard.newSessions}")
        assert client.live.session == sessions[client.username]
        assert client.heard.alertsWith("has left") == [], (client.username, client.heard.alerts)
    await allOf(clients, lambda c: c.heard.presence == names, "everyone still in presence")


@pytest_twisted.ensureDeferred
async def test_killedProcessUserWhoDoesNotComeBackLeaves(cluster):
    """A page whose process is killed and that never comes back is announced as gone on the other process, and its name is freed, within 20 s."""
    a, b = cluster.start(2)
    stayer = await cluster.chatClient(b, "stayer")
    ghost = await cluster.page(a, "ghost")
    await allOf([stayer], lambda c: c.heard.presence == ["ghost", "stayer"], "ghost in presence on B")
    killedAt = reactor.seconds()
    cluster.kill(a)
    await ghost.closed()
    await allOf([stayer], lambda c: " * user ghost has left the room" in c.heard.alerts,
                     "ghost's leave to be announced on B", GONE_DEADLINE)
    await allOf([stayer], lambda c: c.heard.presence == ["stayer"], "ghost to leave B's presence", GONE_DEADLINE)
    took = reactor.seconds() - killedAt
    assert took >= GRACE_PERIOD - 0.5, f"announced after {took:.1f}s, before the grace period ended"
    again = await cluster.chatClient(b, "ghost")
    assert again.username == "ghost"
    assert stayer.heard.alertsWith("ghost has left") == [" * user ghost has left the room"]


# Redis stopped


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("outage", [0.0, 3.0], ids=["brief", "long"])
async def test_redisOutageDegradesThenRecovers(cluster, outage):
    """
    Redis stopped mid-chat: each process's pages are told the process lost
    touch, what they say is refused (BackplaneDown), and /healthz says degraded;
    with Redis back on the same port, pages are told, /healthz
    says ok, messages cross processes again, and presence and unique names
    hold again (the restarted Redis is empty).  Redis comes back as soon
    as that is seen (brief), or after 3 s down (long: the processes'
    attempts to reconnect fail meanwhile).
    """
    redis = cluster.redis
    a, b = cluster.start(2)
    a1 = await cluster.chatClient(a, "a1")
    a2 = await cluster.chatClient(a, "a2")
    b1 = await cluster.chatClient(b, "b1")
    clients = [a1, a2, b1]
    for server in (a, b):
        status, body = await health(server)
        assert (status, body.strip()) == (200, "ok"), (server.port, status, body)
    await withDeadline(a1.say("before the outage"))
    await allOf(clients, lambda c: ("a1", "before the outage") in c.heard.messages, "a message before the outage")

    redis.stop()
    stoppedAt = reactor.seconds()
    await allOf(clients, lambda c: c.heard.alertsWith("lost touch"),
                "pages to be told the process lost touch", BACKPLANE_DEADLINE)
    for server in (a, b):
        status, body = await _waitHealth(server, degraded=True)
        assert status in (200, 503), (status, body)
        # The chat's own /healthz says no more (details: --metrics-listen).
        assert body.strip() == "degraded", body

    # Messages are refused to their senders (who can send them again), not
    # left on one process (test_redis_faults counts it under traffic).
    for client in (a1, b1):
        with pytest.raises(RemoteError) as caught:
            await withDeadline(client.say("while redis is down"))
        assert caught.value.name == "BackplaneDown", caught.value

    # The outage lasts (pacing the scenario, not waiting for a condition).
    await pause(max(0.0, stoppedAt + outage - reactor.seconds()))
    redis.start()
    await allOf(clients, lambda c: c.heard.alertsWith("back in touch"),
                "pages to be told the process is back in touch", BACKPLANE_DEADLINE)
    for server in (a, b):
        status, body = await _waitHealth(server, degraded=False)
        assert (status, body.strip()) == (200, "ok"), (status, body)
    await withDeadline(a1.say("after recovery"))
    await allOf([b1], lambda c: ("a1", "after recovery") in c.heard.messages, "A's message on B after recovery")
    await withDeadline(b1.say("b is back"))
    await allOf([a1, a2], lambda c: ("b1", "b is back") in c.heard.messages, "B's message on A after recovery")
    # The restarted Redis had lost everything: the processes told it again
    # who is online, for presence and for unique names.
    await allOf(clients, lambda c: c.heard.presence == ["a1", "a2", "b1"], "presence of both processes again")
    with pytest.raises(RemoteError) as caught:
        await cluster.chatClient(b, "A2")
    assert caught.value.name == "UsernameTaken"
    for client in clients:
        assert len(client.heard.alertsWith("lost touch")) == 1, client.heard.alerts
        assert len(client.heard.alertsWith("back in touch")) == 1, client.heard.alerts
        assert client.heard.newSessions == []


async def _waitHealth(server, degraded: bool, deadline: float = BACKPLANE_DEADLINE) -> tuple[int, str]:
    """
    Poll C{/healthz} until it says degraded (or, with C{degraded=False},
    ok); its status and body.
    """
    end = reactor.seconds() + deadline
    while True:
        status, body = await health(server)
        if ("degraded" in body) == degraded and status != 0:
            return status, body
        if reactor.seconds() > end:
            raise AssertionError(f"waited {deadline}s for /healthz on {server.port} to say "
                                 f"{'degraded' if degraded else 'ok'}; it says {status} {body!r}")
        await pause(0.1)
