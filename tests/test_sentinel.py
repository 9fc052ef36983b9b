"""
Redis behind Sentinel (C{--redis redis+sentinel://...}) and sends confirmed
by replicas (C{--redis-replicas}), tested as a black box: real
C{redis-server} primaries and replicas, three real sentinels
(C{redis-server --sentinel}), real C{twistd chat-widget} processes and
real L{ChatClient} users, all on loopback ports chosen at run time.

- The URL is parsed and checked at start-up (a bad one is a usage error).
- A send is answered only once a replica has it: with no replica it is
  refused (C{BackplaneDown}), and said again once one is there.
- The primary killed under traffic, or switched over (C{SENTINEL
  FAILOVER}): the sentinels promote a replica, both processes follow it,
  and the chat carries on; of the messages whose senders were told they
  were sent, none is lost and none doubled; those refused meanwhile are
  counted.
- A process follows only a primary: sentinels are asked in turn, a server
  that says it is a replica (C{ROLE}, or C{READONLY} to a write) is left.
- Around a failover or a reconnection a room's numbering goes on where it was, so a
  page that moves to another process resumes there.

Every process is stopped by its PID; every wait is for a condition, with
a deadline; the only pauses pace the simulated users.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import pytest_twisted
from cluster import Cluster, RedisServer, freePort, needRedis, pause, wsUrl
from conftest import eventually, withDeadline
from twisted.internet import threads
from twisted.internet.defer import ensureDeferred
from twisted.python import usage

from chatthing import tap
from chatthing.backplane.redis import RedisURL
from chatthing.live import RemoteError

#: The service name the sentinels monitor the primary as.
SERVICE = "chatsvc"

#: Where sentinels announce a new primary (Sentinel's own name for it).
SWITCH_CHANNEL = "+switch-master"

#: redis-cli, to ask the sentinels and servers how they see things.
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

#: Seconds the sentinels may take to promote a replica once the primary died
#: (down after 1 s, then agreement and election: a few seconds; a split
#: vote is tried again after twice the failover timeout).
FAILOVER_DEADLINE = 30.0


# The URL


@pytest.mark.parametrize("url, sentinels, service, db", [
    ("redis+sentinel://127.0.0.1:26379/mymaster", [("127.0.0.1", 26379)], "mymaster", 0),
    ("redis+sentinel://:pw@a:1,b,[::1]:3/svc/4", [("a", 1), ("b", 26379), ("::1", 3)], "svc", 4),
])
def test_sentinelURLParsed(url, sentinels, service, db):
    """A redis+sentinel:// URL gives its sentinels (default port 26379), service, database and password."""
    parsed = RedisURL(url)
    assert (parsed.sentinels, parsed.service, parsed.db) == (sentinels, service, db)
    assert parsed.password == ("pw" if "pw" in url else None)
    assert parsed.defaultReplicas == 1 and RedisURL("redis://h:1/0").defaultReplicas == 0


@pytest.mark.parametrize("url, reason", [
    ("redis+sentinel://127.0.0.1:26379", "no /SERVICE name"),
    ("redis+sentinel://127.0.0.1:26379/", "no /SERVICE name"),
    ("redis+sentinel:///svc", "bad address ''"),
    ("redis+sentinel://a:1,/svc", "bad address ''"),
    ("redis+sentinel://a:port/svc", "bad port in 'a:port'"),
    ("redis+sentinel://a:1/svc/db", "the database of"),
    ("redis+sentinel://user:pw@a:1/svc", "password"),
])
def test_badSentinelURLIsAUsageError(url, reason):
    """A redis+sentinel:// URL without a service, with a bad address, port or database is a one-line usage error saying so."""
    with pytest.raises(usage.UsageError, match=r"--redis must be a URL like .*redis\+sentinel://") as e:
        parse("--redis", url)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_sentinelURLAccepted():
    """--redis takes a redis+sentinel:// URL; --redis-replicas defaults to the URL's kind; it,
    --redis-replica-wait and --redis-replica-bound are checked."""
    options = parse("--redis", "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/svc/2")
    assert options["redisReplicas"] is None
    assert parse("--redis", "redis://127.0.0.1:1/0", "--redis-replicas", "2")["redisReplicas"] == 2
    for bad in ("-1", "one", "1.5"):
        with pytest.raises(usage.UsageError, match="--redis-replicas must be a whole number"):
            parse("--redis", "redis://127.0.0.1:1/0", "--redis-replicas", bad)
    with pytest.raises(usage.UsageError, match="--redis-replicas was given without --redis"):
        parse("--redis-replicas", "1")
    assert options["redisReplicaWait"] == 0.5
    assert parse("--redis", "redis://127.0.0.1:1/0", "--redis-replica-wait", "2")["redisReplicaWait"] == 2
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(usage.UsageError, match="--redis-replica-wait must be a number of seconds"):
            parse("--redis", "redis://127.0.0.1:1/0", "--redis-replica-wait", bad)
    assert options["redisReplicaBound"] == 10
    assert parse("--redis", "redis://127.0.0.1:1/0", "--redis-replica-bound", "3")["redisReplicaBound"] == 3
    with pytest.raises(usage.UsageError, match="--redis-replica-bound must be a number of seconds"):
        parse("--redis", "redis://127.0.0.1:1/0", "--redis-replica-bound", "0")


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(["--element=chatthing.chatterbox.chat", *args])
    return options


def test_badSentinelURLEndsStartUp(tmp_path):
    """twistd with a bad redis+sentinel:// URL prints the usage error and exits 1."""
    from conftest import runTwistd

    process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat", "--listen",
                         "tcp:0:interface=127.0.0.1", "--redis", "redis+sentinel://127.0.0.1:1"], tmp_path)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, output
    assert "--redis must be a URL like" in output and "no /SERVICE name" in output


# Processes


class RedisProcess(RedisServer):
    """
    A C{redis-server} (a replica with C{--replicaof}, or a sentinel with
    C{--sentinel} and a config file) on a free loopback port: a
    L{RedisServer} started with other arguments.
    """

    def __init__(self, directory: Path, sentinelOf: int | None = None,
                 replicaOf: int | None = None) -> None:
        super().__init__(directory)
        self.sentinelOf = sentinelOf
        self.replicaOf = replicaOf

    def start(self, deadline: float = 10.0) -> "RedisProcess":
        super().start(deadline)
        return self

    def _arguments(self) -> list[str]:
        if self.sentinelOf is not None:
            config = self.directory / "sentinel.conf"
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.sentinelOf} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 2000\n"
                f"sentinel parallel-syncs {SERVICE} 2\n", encoding="utf-8")
            return [str(config), "--sentinel"]
        return [*super()._arguments(), "--replicaof", "127.0.0.1", str(self.replicaOf)]


def cli(port: int, *words: str) -> list[str]:
    """
    The lines C{redis-cli --raw} prints for one command to C{port}
    (C{[]} if it cannot be reached).
    """
    try:
        done = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), "--raw", *words],
                              capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return []
    return done.stdout.split("\n")[:-1] if done.returncode == 0 else []


def syncedReplica(primary: RedisServer, directory: Path) -> RedisProcess:
    """
    A replica of C{primary}, started, once it is in sync.
    """
    replica = RedisProcess(directory, replicaOf=primary.port).start()
    waitFor(lambda: "master_link_status:up" in "".join(cli(replica.port, "INFO", "replication")),
            f"replica {replica.port} to be in sync")
    return replica


class SentinelSet:
    """
    A primary, C{replicas} replicas of it and three sentinels monitoring it
    as L{SERVICE}; what L{Cluster} takes as its Redis (C{url}, C{port},
    C{log()}).
    """

    def __init__(self, directory: Path, replicas: int = 2) -> None:
        self.directory = Path(directory)
        self.primary = RedisServer(self.directory / "primary")
        self.replicas: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []
        self.replicaCount = replicas

    def start(self) -> "SentinelSet":
        self.primary.start()
        for n in range(self.replicaCount):
            self.replicas.append(syncedReplica(self.primary, self.directory / f"replica{n}"))
        for n in range(3):
            self.sentinels.append(RedisProcess(self.directory / f"sentinel{n}",
                                               sentinelOf=self.primary.port).start())
        for sentinel in self.sentinels:
            waitFor(lambda: self._knows(sentinel), f"sentinel {sentinel.port} to know the others", 30)
        return self

    def _knows(self, sentinel: RedisProcess) -> bool:
        lines = cli(sentinel.port, "SENTINEL", "MASTER", SERVICE)
        fields = dict(zip(lines[::2], lines[1::2]))
        return (fields.get("num-slaves") == str(self.replicaCount)
                and fields.get("num-other-sentinels") == "2")

    @property
    def url(self) -> str:
        addresses = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{addresses}/{SERVICE}/0"

    @property
    def port(self) -> int | None:
        return self.primary.port

    def primaryPorts(self) -> set[int]:
        """
        The primary's port as each sentinel names it now.
        """
        ports = set()
        for sentinel in self.sentinels:
            lines = cli(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            if len(lines) == 2 and lines[1].isdigit():
                ports.add(int(lines[1]))
        return ports

    def log(self) -> str:
        parts = [f"--- primary {self.primary.port} ---\n{self.primary.log()}"]
        parts += [f"--- replica {r.port} ---\n{r.log()}" for r in self.replicas]
        parts += [f"--- sentinel {s.port} ---\n{s.log()}" for s in self.sentinels]
        return "\n".join(parts)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.replicas]:
            process.stop()
        self.primary.stop()


def waitFor(condition, what: str, deadline: float = 10.0) -> None:
    """
    Wait (blocking: before the reactor has clients to serve) until
    C{condition()}, or fail after C{deadline} seconds.
    """
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline}s for {what}")
        time.sleep(0.05)


@pytest.fixture
def sentinelSet(tmp_path):
    """
    A started L{SentinelSet}; every process stopped after the test.
    """
    needRedis()
    group = SentinelSet(tmp_path / "redis")
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest_twisted.async_yield_fixture
async def sentinelCluster(sentinelSet, startTwistd, tmp_path):
    """
    A L{Cluster} whose processes use C{sentinelSet} through its sentinels.
    """
    group = Cluster(sentinelSet, startTwistd, tmp_path)
    yield group
    await group.stop()


# Traffic


class Heard:
    """
    A L{Receiver} of a channel's messages.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def received(self, message: str) -> None:
        self.messages.append(message)


class Tally:
    """
    Every message each user said, and what its sender was told: sent
    (C{acked}), refused (C{BackplaneDown}), or another error.
    """

    def __init__(self) -> None:
        self.acked: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.errors: list[tuple[tuple[str, str], str]] = []
        self.stop = False

    async def talk(self, client, pace: float = 0.05) -> None:
        """
        C{client} says one message after another, each once the last was
        answered, until told to stop.
        """
        n = 0
        while not self.stop:
            said = (client.username, f"{client.username} #{n}")
            n += 1
            try:
                await withDeadline(client.say(said[1]), 15)
            except RemoteError as e:
                (self.refused if e.name == "BackplaneDown" else self.errors).append(
                    said if e.name == "BackplaneDown" else (said, str(e)))
            except Exception as e:  # noqa: BLE001 (counted: the test fails on any)
                self.errors.append((said, f"{type(e).__name__}: {e}"))
            else:
                self.acked.append(said)
            await pause(pace)

    def check(self, clients) -> dict[str, int]:
        """
        Every acknowledged message was heard exactly once by every client,
        all in one same order; a refused one at most once.  The counts.
        """
        acked = set(self.acked)
        refused = set(self.refused)
        lost = doubled = refusedHeard = 0
        orders = []
        for client in clients:
            heard = Counter(client.heard.messages)
            lost += sum(1 for said in acked if heard[said] == 0)
            doubled += sum(count - 1 for count in heard.values() if count > 1)
            refusedHeard += sum(1 for said in refused if heard[said])
            orders.append([said for said in client.heard.messages if said in acked])
        outOfOrder = sum(1 for order in orders[1:] if order != orders[0])
        return {"acked": len(acked), "refused": len(refused), "errors": len(self.errors),
                "lost": lost, "doubled": doubled, "outOfOrder": outOfOrder,
                "refusedHeard": refusedHeard}


def connections(server) -> int:
    """
    How many times C{server} has logged that it connected to Redis.
    """
    return sum(1 for line in list(server.logLines) if "connected to Redis at" in line)


# Failover


async def chatThroughFailover(sentinelSet: SentinelSet, cluster: Cluster, failover) -> dict[str, int]:
    """
    Two processes, two users on each, all talking; call C{failover()}
    once the chat is under way, wait for both processes to follow the new
    primary and for the chat to carry on; then every user must have heard
    every acknowledged message once, in one order.  The counts
    (L{Tally.check}).
    """
    a, b = cluster.start(2)
    for server in (a, b):
        server.waitForLog(r"connected to Redis at redis\+sentinel://")
    users = [await cluster.chatClient(server, f"user{n}") for n, server in enumerate((a, b, a, b))]
    tally = Tally()
    talking = [ensureDeferred(tally.talk(user)) for user in users]
    await eventually(lambda: len(tally.acked) >= 20, "the chat to be under way", 20)
    oldPrimary = sentinelSet.primary.port
    before = len(tally.acked)
    await failover()
    try:
        await eventually(lambda: connections(a) >= 2 and connections(b) >= 2,
                         "both processes to reconnect to the new primary", FAILOVER_DEADLINE)
        newPrimaries = await threads.deferToThread(sentinelSet.primaryPorts)
        assert newPrimaries and oldPrimary not in newPrimaries, newPrimaries
        afterFailover = len(tally.acked)
        await eventually(lambda: len(tally.acked) >= afterFailover + 40,
                         "the chat to carry on after the failover", 20)
    finally:
        tally.stop = True
        for d in talking:
            await withDeadline(d, 20)
    total = len(tally.acked)
    try:
        await eventually(lambda: all(len(c.heard.messages) >= total for c in users),
                         f"every user to hear the {total} acknowledged messages", 10)
    except TimeoutError:
        pass  # counted as lost below
    counts = tally.check(users)
    counts["before"] = before
    print(f"failover: {counts}; errors {tally.errors[:5]}")
    assert counts["lost"] == 0 and counts["doubled"] == 0 and counts["outOfOrder"] == 0, counts
    assert counts["refusedHeard"] == 0, counts
    assert counts["errors"] == 0, tally.errors[:5]
    assert counts["acked"] > before + 40, counts
    assert not shownAfterRefused(cluster.servers)
    return counts


def shownAfterRefused(servers) -> list[str]:
    """
    The lines in which a process logged that it delivered a call whose
    sender was told it was not sent.
    """
    return [line for server in servers for line in list(server.logLines) if "after its sender was told" in line]


@pytest_twisted.ensureDeferred
async def test_primaryKilledUnderTraffic(sentinelSet, sentinelCluster):
    """The primary SIGKILLed under traffic: the processes follow the promoted replica; 0 acknowledged lost, 0 doubled."""
    async def kill() -> None:
        sentinelSet.primary.kill()

    await chatThroughFailover(sentinelSet, sentinelCluster, kill)


@pytest_twisted.ensureDeferred
async def test_switchOverUnderTraffic(sentinelSet, sentinelCluster):
    """SENTINEL FAILOVER (the old primary stays up, demoted): the processes hear +switch-master and move; 0 lost, 0 doubled."""
    async def switchOver() -> None:
        answer = await threads.deferToThread(cli, sentinelSet.sentinels[0].port,
                                             "SENTINEL", "FAILOVER", SERVICE)
        assert answer == ["OK"], answer

    await chatThroughFailover(sentinelSet, sentinelCluster, switchOver)
    assert sentinelSet.primary.running
    for server in sentinelCluster.servers:
        server.waitForLog(f"the primary of {SERVICE} moved from 127.0.0.1:{sentinelSet.primary.port}")


# Confirmed by replicas


class LonePrimary:
    """
    A primary with no replica (C{primary}), a L{Cluster} of twistd on it
    (C{cluster}), and the replicas a test adds (L{addReplica}).
    """

    def __init__(self, directory: Path, startTwistd) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary")
        self.cluster = Cluster(self.primary, startTwistd, directory)
        self.replicas: list[RedisProcess] = []

    async def addReplica(self, name: str = "replica") -> RedisProcess:
        """
        A replica of the primary, once it is in sync; stopped after the test if not before.
        """
        replica = await threads.deferToThread(syncedReplica, self.primary, self.directory / name)
        self.replicas.append(replica)
        return replica


@pytest_twisted.async_yield_fixture
async def lonePrimary(startTwistd, tmp_path):
    """
    A started L{LonePrimary}; its processes, replicas and primary stopped after the test.
    """
    needRedis()
    lone = LonePrimary(tmp_path, startTwistd)
    lone.primary.start()
    try:
        yield lone
    finally:
        try:
            await lone.cluster.stop()
        finally:
            for replica in lone.replicas:
                replica.stop()
            lone.primary.stop()


@pytest_twisted.ensureDeferred
async def test_sendRefusedUntilAReplicaHasIt(lonePrimary):
    """With --redis-replicas 1 and no replica a say is refused (BackplaneDown) once its bound is past, and no page,
    on either process, ever shows it; with a replica in sync says are sent and shown once."""
    group = lonePrimary.cluster
    # The bound: how long a say waits for a replica before it is settled.
    a, b = group.start(2, "--redis-replicas", "1", "--redis-replica-bound", "3")
    for server in (a, b):
        server.waitForLog("connected to Redis at")
    # A login too waits for a replica (test_sentinel_logins): one while alice and bob log in.
    first = await lonePrimary.addReplica("first")
    alice, bob = await group.chatClient(a, "alice"), await group.chatClient(b, "bob")
    first.stop()
    with pytest.raises(RemoteError) as refused:
        await withDeadline(alice.say("nobody keeps a copy"), 30)
    assert refused.value.name == "BackplaneDown"
    assert "could not be confirmed as saved (the 1 Redis replica(s) needed did not have it within 3 s)" \
        in refused.value.message
    await lonePrimary.addReplica()
    await withDeadline(alice.say("kept twice now"), 10)
    await withDeadline(bob.say("and by bob"), 10)
    for client in (alice, bob):
        await eventually(lambda: ("bob", "and by bob") in client.heard.messages, "both to hear both")
        said = [m for m in client.heard.messages if m[0] in ("alice", "bob")]
        assert said == [("alice", "kept twice now"), ("bob", "and by bob")], said
    assert not shownAfterRefused((a, b))


@pytest_twisted.ensureDeferred
async def test_readOnlyAnswerDropsTheConnection(tmp_path):
    """A write answered READONLY (the server was made a replica) fails, and the command connection is made again."""
    from twisted.internet import reactor

    from chatthing.backplane.redis import RedisConnection

    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = syncedReplica(primary, tmp_path / "replica")
    connection = RedisConnection(RedisURL(f"redis://127.0.0.1:{replica.port}/0"), reactor, "test:")
    connection.subscribe("test:channel", Heard())  # the subscriber needs a channel
    connection.startService()
    try:
        assert await withDeadline(connection.whenConnected(10))
        first = connection.commands
        with pytest.raises(Exception, match="READONLY"):
            await withDeadline(connection.call("SET", "greeting", "hello"))
        await eventually(lambda: connection.commands not in (None, first),
                         "a new command connection")
        assert await withDeadline(connection.call("GET", "greeting")) is None
    finally:
        await connection.stopService()
        replica.stop()
        primary.stop()


def shownTimes(page, text: str) -> int:
    """
    How many times C{page} was shown a line with C{text}.
    """
    return sum(1 for args in page.calls() if text in json.dumps(args, ensure_ascii=False))


def durableToItsEnd(server: RedisServer, room: str) -> bool:
    """
    Whether, on C{server}, the durable point of C{room}'s stream covers its
    last entry.
    """
    key = f"chatthing:stream:room:{room}"
    point = re.fullmatch(rb"\$\d+\r\n(\d+)\r\n", server.command("HGET", "chatthing:durable", key))
    last = re.search(rb"\r\n0-(\d+)\r\n", server.command("XREVRANGE", key, "+", "-", "COUNT", "1"))
    return bool(point and last) and point.group(1) == last.group(1)


@pytest_twisted.async_yield_fixture
async def replicated(startTwistd, tmp_path):
    """
    A L{Cluster} on a primary with one replica in sync; the processes, the
    replica and the primary stopped after the test.
    """
    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    group = Cluster(primary, startTwistd, tmp_path)
    replicas = []
    try:
        replicas.append(await threads.deferToThread(syncedReplica, primary, tmp_path / "replica"))
        yield group
    finally:
        await group.stop()
        for replica in replicas:
            replica.stop()
        primary.stop()


async def pageAloneOnA(cluster: Cluster, visited: bool) -> tuple:
    """
    Two processes, A and B, confirming writes with one replica; a page on
    A alone in its room, which says three lines (with C{visited}, B had a
    page there that left).  C{(a, b, page, lines)}: the lines it says, the
    last one still to say.
    """
    a, b = cluster.start(2, "--redis-replicas", "1", gracePeriod=60)
    for server in (a, b):
        server.waitForLog("connected to Redis at")
    page = await cluster.page(a, "alice", room="quiet")
    said = [f"line {n}" for n in range(4)]
    for text in said[:3]:
        assert (await page.call("say", text))["type"] == "result"
    if visited:
        visitor = await cluster.page(b, "bob", room="quiet")
        await visitor.waitFor(lambda: shownTimes(visitor, said[2]), "the visitor to see the room")
        visitor.close()
        await visitor.closed()
        b.waitForLog("bob left quiet")
    return a, b, page, said


async def movesToB(cluster: Cluster, a, b, page, said: list[str]) -> None:
    """
    A SIGKILLed: the page must resume its session on B, say its last line
    there, and have been shown every line once.
    """
    session = page.session
    cluster.kill(a)
    page.url = wsUrl(b)
    frame = await page.resume()
    assert frame["type"] == "resumed" and page.session == session, frame
    answer = await page.call("say", said[-1])
    assert answer["type"] == "result", answer
    await page.waitFor(lambda: shownTimes(page, said[-1]), "the line said on B")
    assert [shownTimes(page, text) for text in said] == [1] * len(said), page.calls()


async def moveAfterAFault(cluster: Cluster, fault, primaryAfter, visited: bool) -> None:
    """
    L{pageAloneOnA}; C{fault()}, then, once both processes are on the
    primary C{primaryAfter()} gives and the room is durable to its end
    there, L{movesToB}.
    """
    a, b, page, said = await pageAloneOnA(cluster, visited)
    await fault()
    await eventually(lambda: connections(a) >= 2 and connections(b) >= 2, "both to reconnect", FAILOVER_DEADLINE)
    primary = await primaryAfter()
    await eventually(lambda: durableToItsEnd(primary, "quiet"), "the room durable to its end")
    await movesToB(cluster, a, b, page, said)


@pytest.mark.parametrize("visited", [False, True], ids=["roomNeverOpenOnB", "roomEmptyOnB"])
@pytest.mark.parametrize("lagging", [False, True], ids=["", "pointLagging"])
@pytest_twisted.ensureDeferred
async def test_aPageMovedAfterAReconnectionResumes(replicated, visited, lagging):
    """A page alone in its room on A (B never had the room open, or had a page there that left); every connection
    to Redis is cut (both processes reconnect, as after a failover), then A is SIGKILLed: the page resumes its
    session on B, and every line is shown to it once (0 new sessions, 0 lost, 0 doubled)."""
    primary = replicated.redis

    async def cut() -> None:
        if lagging:
            # As a replica promoted before the primary's last DURABLE reached it: the entries, an older point.
            assert primary.command("HSET", "chatthing:durable", "chatthing:stream:room:quiet", "1") == b":0\r\n"
        for kind in ("normal", "pubsub"):
            assert primary.command("CLIENT", "KILL", "TYPE", kind).startswith(b":")

    async def same() -> RedisServer:
        return primary

    await moveAfterAFault(replicated, cut, same, visited)


@pytest_twisted.ensureDeferred
async def test_aPageMovedWhenThePointLagsAndItsProcessDiedResumes(replicated):
    """The point in Redis behind the room's end (as on a replica promoted before the primary's last point reached
    it) and A, the only process that knew better, SIGKILLed with it: B opens the room for the page that moves there
    and confirms its entries first, so the page resumes its session, every line shown once."""
    primary = replicated.redis
    a, b, page, said = await pageAloneOnA(replicated, visited=False)
    await eventually(lambda: durableToItsEnd(primary, "quiet"), "the room durable to its end")
    assert primary.command("HSET", "chatthing:durable", "chatthing:stream:room:quiet", "1") == b":0\r\n"
    await movesToB(replicated, a, b, page, said)


@pytest.mark.parametrize("visited", [False, True], ids=["roomNeverOpenOnB", "roomEmptyOnB"])
@pytest_twisted.ensureDeferred
async def test_aPageMovedAfterAFailoverResumes(sentinelSet, sentinelCluster, visited):
    """As above, the primary SIGKILLed instead and a replica promoted by the sentinels: the page that moves from A
    (SIGKILLed after the failover) to B resumes its session there, every line shown once."""
    async def kill() -> None:
        sentinelSet.primary.kill()

    async def promoted() -> RedisServer:
        ports = await threads.deferToThread(sentinelSet.primaryPorts)
        assert len(ports) == 1 and sentinelSet.primary.port not in ports, ports
        return next(r for r in sentinelSet.replicas if r.port in ports)

    await moveAfterAFault(sentinelCluster, kill, promoted, visited)


@pytest_twisted.ensureDeferred
async def test_numberingGoesOnWithoutAGapAfterAReconnection(tmp_path):
    """With replicas confirming writes, processes that reconnect (one after the other, one saying something between)
    number the stream on from where it was: offsets 1, 2, 3 on both, no floor entry added, every call heard once."""
    from test_redis_backplane import openStream
    from twisted.internet import reactor

    from chatthing.backplane.redis import RedisBackplane

    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = syncedReplica(primary, tmp_path / "replica")
    a, b = (RedisBackplane(primary.url, gracePeriod=30, reactor=reactor, replicas=1, replicaWait=10)
            for _ in range(2))
    notices: dict = {a: [], b: []}
    try:
        for backplane in (a, b):
            backplane.onStatusChange(notices[backplane].append)
            backplane.startService()
            assert await withDeadline(backplane.whenConnected(10))
        (sa, pa), (sb, pb) = await openStream(a), await openStream(b)
        await withDeadline(sa.publish([("said", ["confirmed 1"])]))
        await eventually(lambda: len(pa.calls()) == len(pb.calls()) == 1, "the first call on both")
        # B reaches the primary again first and says something; then A does.
        for backplane in (b, a):
            backplane.connection.reconnect()
            await eventually(lambda: notices[backplane] == [False, True], "the reconnection", 20)
            if backplane is b:
                await withDeadline(sb.publish([("said", ["confirmed 2"])]))
        await withDeadline(sa.publish([("said", ["confirmed 3"])]))
        expected = [(n, "said", [f"confirmed {n}"]) for n in (1, 2, 3)]
        for page in (pa, pb):
            await eventually(lambda: len(page.calls()) >= 3, "both to hear all", 10)
            assert page.calls() == expected
        assert sa.offset == sb.offset == 3
        assert primary.command("XLEN", sa.key) == b":3\r\n"
    finally:
        for backplane in (a, b):
            if backplane.running:
                await backplane.stopService()
        replica.stop()
        primary.stop()


class FakeSentinel:
    """
    A sentinel that names C{answers()} as the primary (an injected fault:
    a sentinel that is wrong for a while), on a free loopback port.
    """

    def __init__(self, answers) -> None:
        self.answers = answers
        self.asked = 0
        self.listening = None

    async def start(self) -> "FakeSentinel":
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory, Protocol

        fake = self

        class Answer(Protocol):
            def connectionMade(self) -> None:
                self.received = b""

            def dataReceived(self, data: bytes) -> None:
                self.received += data
                if self.received.endswith(f"{SWITCH_CHANNEL}\r\n".encode()):  # SUBSCRIBE
                    self.transport.write(f"*3\r\n$9\r\nsubscribe\r\n${len(SWITCH_CHANNEL)}\r\n"
                                         f"{SWITCH_CHANNEL}\r\n:1\r\n".encode())
                elif self.received.endswith(f"{SERVICE}\r\n".encode()):
                    fake.asked += 1
                    host, port = fake.answers()
                    self.transport.write(f"*2\r\n${len(host)}\r\n{host}\r\n${len(str(port))}\r\n{port}\r\n"
                                         .encode())

        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.listening = await endpoint.listen(Factory.forProtocol(Answer))
        return self

    @property
    def port(self) -> int:
        return self.listening.getHost().port


@pytest.mark.parametrize("password", [None, "s3cr:t@"])
@pytest_twisted.ensureDeferred
async def test_followsOnlyAPrimary(tmp_path, password):
    """The sentinels are asked in turn (a dead one skipped); a server named as the primary that says (ROLE) it is a
    replica is left, and the sentinels asked again until the one named is the primary (logged in with the URL's
    password, if any, before ROLE)."""
    from urllib.parse import quote

    from twisted.internet import reactor

    from chatthing.backplane.redis import RedisConnection

    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = syncedReplica(primary, tmp_path / "replica")
    credentials = ""
    if password is not None:  # set once in sync: the replica keeps its link
        for port in (replica.port, primary.port):
            assert cli(port, "CONFIG", "SET", "requirepass", password) == ["OK"]
        credentials = f":{quote(password, safe='')}@"
    # Wrong three times, then right.
    fake = FakeSentinel(lambda: ("127.0.0.1", replica.port if fake.asked <= 3 else primary.port))
    await fake.start()
    dead = freePort()
    url = RedisURL(f"redis+sentinel://{credentials}127.0.0.1:{dead},127.0.0.1:{fake.port}/{SERVICE}/0")
    connection = RedisConnection(url, reactor, "test:")
    connection.subscribe("test:channel", Heard())
    connection.startService()
    try:
        assert await withDeadline(connection.whenConnected(20), 25)
        assert fake.asked >= 4
        for protocol in (connection.commands, connection._subscriber):
            assert protocol.transport.getPeer().port == primary.port
        assert await withDeadline(connection.call("SET", "greeting", "hello")) == "OK"
    finally:
        await connection.stopService()
        await fake.listening.stopListening()
        replica.stop()
        primary.stop()
