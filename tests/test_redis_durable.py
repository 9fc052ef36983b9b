"""
Sends confirmed by replicas (C{--redis-replicas 1}) delivered only once
durable (L{chatthing.backplane.redis.durable}), tested as a black box: a
real C{redis-server} primary and replica, two real C{twistd chat-widget}
processes, real L{ChatClient} users, all on loopback ports chosen at run
time.

- A replica that lags (frozen with SIGSTOP for less than the bound): the
  says meanwhile are held, neither answered nor shown, then, once it has
  them, sent and shown once each; none refused.
- A call waiting for a replica when the processes lose Redis (as in a
  failover) is settled by what the primary holds when they are back: not
  there, refused and shown nowhere; there, sent once a replica has it.
- An entry whose writer died before it was durable is shown by the
  others once a replica has it (they ask the replicas themselves).

Every process is stopped by its PID; every wait is for a condition, with
a deadline; the only pauses pace the simulated users and are the fault's
length.
"""

import json

import pytest
import pytest_twisted  # noqa: I001
from cluster import Cluster, RedisServer, needRedis, pause
from conftest import eventually, withDeadline
from test_redis_backplane import openStream
from test_sentinel import Tally, cli, shownAfterRefused, syncedReplica
from twisted.internet import threads
from twisted.internet.defer import ensureDeferred

from chatthing.backplane import BackplaneDown
from chatthing.backplane.redis import RedisBackplane

#: Seconds the replica is frozen: several of --redis-replica-wait (0.5 s),
#: well under the bound (10 s).
FROZEN = 3.0


@pytest_twisted.ensureDeferred
async def test_laggingReplicaDelaysSaysThenEachIsSentAndShownOnce(startTwistd, tmp_path):
    """A replica frozen for 3 s under traffic: says wait (none answered while it is frozen), then every one is
    acknowledged and heard once by every user, in one order; none refused, none refused-but-heard."""
    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = await threads.deferToThread(syncedReplica, primary, tmp_path / "replica")
    group = Cluster(primary, startTwistd, tmp_path)
    try:
        a, b = group.start(2, "--redis-replicas", "1")
        for server in (a, b):
            server.waitForLog("connected to Redis at")
        users = [await group.chatClient(server, f"user{n}") for n, server in enumerate((a, b, a, b))]
        tally = Tally()
        talking = [ensureDeferred(tally.talk(user)) for user in users]
        try:
            await eventually(lambda: len(tally.acked) >= 20, "the chat to be under way", 20)
            replica.pause()
            try:
                stopped = len(tally.acked)
                await pause(FROZEN)
                duringFreeze = len(tally.acked) - stopped
            finally:
                replica.resume()
            await eventually(lambda: len(tally.acked) >= stopped + 40, "the chat to carry on", 20)
        finally:
            tally.stop = True
            for d in talking:
                await withDeadline(d, 20)
        total = len(tally.acked)
        await eventually(lambda: all(len(u.heard.messages) >= total for u in users),
                         f"every user to hear the {total} acknowledged messages", 10)
        counts = tally.check(users)
        print(f"lagging replica: {counts}, acked while frozen {duringFreeze}")
        assert counts["refused"] == 0 and counts["refusedHeard"] == 0 and counts["errors"] == 0, counts
        assert counts["lost"] == 0 and counts["doubled"] == 0 and counts["outOfOrder"] == 0, counts
        # Four users, one say each in flight: at most those the replica had before it stopped.
        assert duringFreeze <= len(users), duringFreeze
        assert not shownAfterRefused((a, b))
    finally:
        await group.stop()
        replica.stop()
        primary.stop()


class Pair:
    """
    A primary without a replica and two backplanes on it, each waiting for
    one replica (0.2 s a C{WAIT}, 30 s the bound: longer than these tests
    wait); L{addReplica} gives it one.
    """

    def __init__(self, directory) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary")
        self.replica: RedisServer | None = None
        self.backplanes: list[RedisBackplane] = []

    async def start(self) -> tuple:
        """
        Start it all; both backplanes' streams of one room, each with its page.
        """
        from twisted.internet import reactor

        self.primary.start()
        for _ in range(2):
            backplane = RedisBackplane(self.primary.url, gracePeriod=30, reactor=reactor, replicas=1,
                                       replicaWait=0.2, replicaBound=30)
            backplane.startService()
            self.backplanes.append(backplane)
            assert await withDeadline(backplane.whenConnected(10))
        return await openStream(self.backplanes[0]), await openStream(self.backplanes[1])

    async def addReplica(self) -> None:
        self.replica = await threads.deferToThread(syncedReplica, self.primary, self.directory / "replica")

    async def stop(self) -> None:
        for backplane in self.backplanes:
            if backplane.running:
                await backplane.stopService()
        if self.replica is not None:
            self.replica.stop()
        self.primary.stop()


@pytest_twisted.async_yield_fixture
async def pair(tmp_path):
    """
    A started L{Pair}: C{((streamA, pageA), (streamB, pageB), pair)}; all stopped after the test.
    """
    needRedis()
    started = Pair(tmp_path)
    try:
        yield (*await started.start(), started)
    finally:
        await started.stop()


def said(page) -> list:
    return [args[0] for _, method, args in page.calls() if method == "said"]


@pytest.mark.parametrize("gone", [True, False])
@pytest_twisted.ensureDeferred
async def test_aWaitingCallIsSettledByWhatThePrimaryHoldsAfterAReconnection(pair, gone):
    """A call waiting for a replica when both processes lose Redis: if the primary they come back to does not hold it
    (as a promoted replica that never got it), it is refused and shown nowhere; if it does, it is sent and shown once
    when a replica has it."""
    (sa, pa), (sb, pb), redis = pair
    outcome: list = []
    sa.publish([("said", ["in flight"])]).addBoth(outcome.append)
    await eventually(lambda: sb.durable.held, "B to hold the entry")
    assert outcome == [] and said(pa) == said(pb) == []
    if gone:
        seq = max(sb.durable.held)
        assert cli(redis.primary.port, "XDEL", sa.key, f"0-{seq}") == ["1"]
    for backplane in redis.backplanes:
        backplane.connection.reconnect()
    if gone:
        await eventually(lambda: outcome, "the call to be refused", 15)
        assert outcome[0].check(BackplaneDown), outcome
        assert "could not be confirmed as saved" in outcome[0].getErrorMessage()
    await redis.addReplica()
    if not gone:
        await eventually(lambda: outcome, "the call to be sent", 15)
        assert outcome == [None], outcome
    await withDeadline(sb.publish([("said", ["after"])]), 15)
    expected = ["after"] if gone else ["in flight", "after"]
    await eventually(lambda: said(pa) == said(pb) == expected, f"both to show {expected}")


@pytest_twisted.ensureDeferred
async def test_anEntryWhoseWriterDiedIsShownOnceAReplicaHasIt(pair):
    """An entry of a process that died before a replica had it is held by the others, then shown once, when they
    have asked a replica themselves."""
    (sa, pa), (sb, pb), redis = pair
    call = json.dumps(["said", ["from the dead"]])
    ident = cli(redis.primary.port, "XADD", sa.key, "0-*", "c", call, "o", "dead-process/1")[0]
    cli(redis.primary.port, "PUBLISH", sa.key, f"{ident.split('-')[1]} dead-process/1 {call}")
    await eventually(lambda: sa.durable.held and sb.durable.held, "both to hold the entry")
    assert said(pa) == said(pb) == []
    await redis.addReplica()
    await eventually(lambda: said(pa) == said(pb) == ["from the dead"], "both to show it", 15)


@pytest_twisted.ensureDeferred
async def test_aClosedStreamIsNoLongerToldOfTheConnection(pair):
    """A room's stream closed (its room emptied) is forgotten by the connection, which lives as long as the process:
    rooms opened and closed over and over do not pile up listeners."""
    (sa, pa), _, redis = pair
    connection = redis.backplanes[0].connection
    before = len(connection._listeners)
    for number in range(5):
        stream = redis.backplanes[0].stream(f"room:other{number}", "room", 1000)
        await stream.ready()
        stream.close()
    assert len(connection._listeners) == before
