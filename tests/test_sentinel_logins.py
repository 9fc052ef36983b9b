"""
Logins confirmed by replicas (C{--redis-replicas}), tested as a black box:
real C{redis-server} primaries and replicas, three real sentinels, real
C{twistd chat-widget} processes and real pages (L{LiveTestClient}), all on
loopback ports chosen at run time.

A page is told it has a name only once the name (its holder, the names
hash) and its session's record with the name are on a replica too
(C{WAIT}, as a send is): a failover, which promotes a replica, cannot take
an answered login along.

- With no replica, logins are refused with a clear error (the page shows
  it under the login box), and nothing is left held: the name is free, and
  the page may log in again once a replica is there.
- The primary (and the process the pages logged in on) killed right after
  the logins: after the failover every name is still held (nobody else can
  take it) and every page resumes its session, with its name, on the other
  process.

Every process is stopped by its PID; every wait is for a condition, with
a deadline.
"""

import pytest_twisted
from cluster import RedisServer, needRedis, wsUrl
from playwright.sync_api import expect
from test_browser import browser, openChat  # noqa: F401  (fixtures)
from conftest import eventually
from test_sentinel import (  # noqa: F401  (fixtures)
    FAILOVER_DEADLINE, connections, lonePrimary, sentinelCluster, sentinelSet, syncedReplica)
from twisted.internet import reactor, task

#: Logins tried in each test.
PAGES = 5


def held(redis: RedisServer) -> int:
    """
    How many names the C{redis} server holds (the names hash's length).
    """
    reply = redis.command("HLEN", "chatthing:names").strip()
    assert reply.startswith(b":"), reply
    return int(reply[1:])


@pytest_twisted.ensureDeferred
async def test_loginsRefusedUntilAReplicaHasThem(lonePrimary):
    """With --redis-replicas 1 and no replica every login is refused (BackplaneDown, a sentence the page shows) and
    holds nothing; with a replica in sync the same pages log in with the same names, and nobody else can take them."""
    group, primary = lonePrimary.cluster, lonePrimary.primary
    server, = group.start(1, "--redis-replicas", "1", "--redis-replica-wait", "0.5")
    server.waitForLog("connected to Redis at")
    pages = [await group.page(server) for _ in range(PAGES)]
    answers = [await page.call("setUsername", f"user{n}") for n, page in enumerate(pages)]
    refused = [a for a in answers if a["type"] == "error" and a["error"]["name"] == "BackplaneDown"]
    assert len(refused) == PAGES, answers
    assert all("could not confirm that its store kept your name" in a["error"]["message"]
               for a in refused), refused
    assert held(primary) == 0, "a refused login holds its name"
    replica = await lonePrimary.addReplica()
    answers = [await page.call("setUsername", f"user{n}") for n, page in enumerate(pages)]
    assert [a["type"] for a in answers] == ["result"] * PAGES, answers
    assert held(primary) == held(replica) == PAGES
    other = await group.page(server)
    taken = [await other.call("setUsername", f"user{n}") for n in range(PAGES)]
    assert [a["error"]["name"] for a in taken] == ["UsernameTaken"] * PAGES, taken
    # A change of name with no replica: refused, the old name kept (and held), the new one free.
    replica.stop()
    renamed = await pages[0].call("say", "/nick renamed")
    assert renamed["type"] == "error" and renamed["error"]["name"] == "BackplaneDown", renamed
    assert (await other.call("setUsername", "user0"))["error"]["name"] == "UsernameTaken"
    still = await pages[0].call("setUsername", "user0")  # answered with the name it has
    assert still == {**still, "type": "result", "value": "user0"}, still
    assert held(primary) == PAGES


@pytest_twisted.ensureDeferred
async def test_namesAndSessionsOutliveAFailover(sentinelSet, sentinelCluster):
    """Pages log in on A; at once the primary and A are SIGKILLed: after the failover every name is still held (0
    taken by another page on B), and every page resumes its session on B with its name (0 new sessions)."""
    # A grace period longer than the failover: A's sessions are not reaped meanwhile.
    a, b = sentinelCluster.start(2, gracePeriod=60)
    for server in (a, b):
        server.waitForLog(r"connected to Redis at redis\+sentinel://")
    # A page on B from the start: B keeps the room's frames for pages that move to it.
    other = await sentinelCluster.page(b)
    pages = [await sentinelCluster.page(a, f"user{n}") for n in range(PAGES)]
    sentinelSet.primary.kill()
    sentinelCluster.kill(a)
    await eventually(lambda: connections(b) >= 2, "B to reconnect to the new primary", FAILOVER_DEADLINE)
    taken = [await other.call("setUsername", f"user{n}") for n in range(PAGES)]
    assert sum(1 for answer in taken if answer["type"] == "result") == 0, taken
    # Once B has caught up with the new primary (it delivers what comes after): a page resuming
    # on a process still catching up, behind the page, cannot be resumed (not this test's matter).
    # Until the new primary's replica is in sync a login is refused (not confirmed): ask again until one is taken.
    watcher = [await other.call("setUsername", "watcher")]
    end = reactor.seconds() + FAILOVER_DEADLINE
    while watcher[-1]["type"] != "result" and reactor.seconds() < end:
        await task.deferLater(reactor, 0.2, lambda: None)
        watcher.append(await other.call("setUsername", "watcher"))
    assert watcher[-1]["type"] == "result", watcher
    assert all("could not confirm" in str(answer) for answer in watcher[:-1]), watcher
    await other.waitFor(lambda: any("watcher" in str(args) for args in other.calls()), "B to tell of the watcher")
    newSessions = 0
    for n, page in enumerate(pages):
        session = page.session
        page.url = wsUrl(b)
        frame = await page.resume()
        newSessions += frame["type"] != "resumed" or page.session != session
        answer = await page.call("setUsername", f"user{n}")  # the same call again: the same answer
        assert answer == {**answer, "type": "result", "value": f"user{n}"}, answer
    assert newSessions == 0
    who = await pages[0].call("say", "/who")
    assert who["type"] == "result", who


@pytest_twisted.ensureDeferred
async def test_noAnsweredLoginLostWhenTheReplicasLag(sentinelSet, sentinelCluster):
    """The replicas frozen (SIGSTOP) and cut off (CLIENT KILL TYPE replica: they lag), pages log in on A, the primary and A are SIGKILLed and the replicas go
    on: after the failover no login the pages were told was accepted is lost (0 names another page on B can take);
    the refused pages log in again on B."""
    a, b = sentinelCluster.start(2, gracePeriod=60)
    for server in (a, b):
        server.waitForLog(r"connected to Redis at redis\+sentinel://")
    pages = [await sentinelCluster.page(a) for _ in range(PAGES)]
    for replica in sentinelSet.replicas:
        replica.pause()
    try:
        # Cut off while frozen: nothing written from now on reaches them (not even in their sockets).
        assert sentinelSet.primary.command("CLIENT", "KILL", "TYPE", "replica").startswith(b":")
        answers = [await page.call("setUsername", f"user{n}") for n, page in enumerate(pages)]
        sentinelSet.primary.kill()
        sentinelCluster.kill(a)
    finally:
        for replica in sentinelSet.replicas:
            replica.resume()
    accepted = [n for n, answer in enumerate(answers) if answer["type"] == "result"]
    refused = [n for n, answer in enumerate(answers) if answer["type"] == "error"
               and answer["error"]["name"] == "BackplaneDown"]
    assert len(accepted) + len(refused) == PAGES, answers
    await eventually(lambda: connections(b) >= 2, "B to reconnect to the new primary", FAILOVER_DEADLINE)
    taken = [await (await sentinelCluster.page(b)).call("setUsername", f"user{n}") for n in accepted]
    lost = sum(1 for answer in taken if answer["type"] == "result")
    print(f"replicas lagging: {len(accepted)} logins accepted, {len(refused)} refused, {lost} lost")
    assert lost == 0, taken
    again = []
    for n in refused:
        pages[n].url = wsUrl(b)
        await pages[n].resume()  # a new session: nothing of the refused login was kept
        again.append(await pages[n].call("setUsername", f"user{n}"))
    assert [answer["type"] for answer in again] == ["result"] * len(refused), again


def test_pageShowsAnUnconfirmedLogin(startTwistd, tmp_path, openChat):
    """In Chromium, a login no replica confirms is refused with a sentence under the login box; once a replica is in
    sync the same page logs in with that name."""
    needRedis()
    primary = RedisServer(tmp_path / "primary")
    replica = None
    primary.start()
    try:
        server = startTwistd("--redis", primary.url, "--redis-replicas", "1", "--redis-replica-wait", "2")
        server.waitForLog("connected to Redis at")
        chat = openChat(url=server.url)
        chat.tryName("alice")
        expect(chat.page.locator('[name="loginError"]')).to_have_text(
            "The server could not confirm that its store kept your name (it may be changing over to a "
            "standby); please try again in a moment.")
        expect(chat.page.locator('[name="username"]')).to_be_visible()
        assert held(primary) == 0
        replica = syncedReplica(primary, tmp_path / "replica")
        chat.login("alice")
        assert held(primary) == 1
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
