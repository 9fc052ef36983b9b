"""
Clients that fail over by themselves (issue 15): with C{--public-url} the
welcome tells each client the cluster's processes' URLs, and a
L{ChatClient} given one process's URL moves to the next when its own keeps
failing -- no balancer in front -- resuming its session there with nothing
lost or doubled; and a L{ChatClient} whose session could not be resumed
never says anything before it has logged in again.
"""

import pytest_twisted
from playwright.sync_api import expect
from test_browser import browser, openChat  # noqa: F401  (fixtures)
from test_state_file import pageErrors
from cluster import GRACE_PERIOD, RedisServer, freePort, needRedis, pause
from oneport import OnePort, chatClient
from test_cluster import Transcript, allOf
from twisted.internet import reactor

import cluster as harness
from chatthing.live.client import Backoff

redisServer = harness.redisServer
cluster = harness.cluster


@pytest_twisted.ensureDeferred
async def test_clientsOfAKilledProcessFailOverToTheWelcomesUrls(redisServer: RedisServer, tmp_path):
    """Four clients given process A's URL only; A is killed: each moves to B by the welcome's URLs, same session, every message heard once by all in one order, none announced as gone."""
    needRedis()
    # Each process must be told both URLs as it starts: free ports first.
    a, b = OnePort(tmp_path, freePort()), OnePort(tmp_path, freePort())
    clients: list = []
    try:
        urls = [f"ws://127.0.0.1:{port}/live" for port in (a.port, b.port)]
        options = ("--redis", redisServer.url, "--grace-period", str(GRACE_PERIOD),
                   "--public-url", urls[0], "--public-url", urls[1])
        victim, survivor = a.start(*options), b.start(*options)
        names = [f"user{n}" for n in range(4)]
        for name in names:
            await chatClient(victim, name, clients)
        assert all(c.live.welcome["urls"] == urls for c in clients)
        sessions = {c.username: c.live.session for c in clients}
        await allOf(clients, lambda c: c.heard.presence == names, "everyone in presence")

        transcript = Transcript(clients)
        for n in range(3):
            transcript.everyoneSays(f"before {n}")
            await pause(0.1)
        transcript.everyoneSays("just before")  # in flight as it dies
        killedAt = reactor.seconds()
        harness.Cluster.kill(None, victim)  # SIGKILL by its PID
        n = 0
        while reactor.seconds() < killedAt + GRACE_PERIOD + 4:
            transcript.everyoneSays(f"after {n}")
            n += 1
            await pause(0.3)
        await transcript.heardByAll(20)
        for client in clients:
            assert client.connected and client.live.url == urls[1], client.live
            assert client.heard.newSessions == [], client.heard.newSessions
            assert client.live.session == sessions[client.username]
            assert client.heard.alertsWith("has left") == [], client.heard.alerts
        assert survivor.process.poll() is None
    finally:
        for client in clients:
            await client.close()
        a.stopAll()
        b.stopAll()


@pytest_twisted.ensureDeferred
async def test_noSayBeforeLoggingInAgain(cluster):
    """A client whose session expired logs in again (a Redis round trip); what it says meanwhile is said after the login, never refused as not logged in."""
    needRedis()
    [server] = cluster.start(1, gracePeriod=0.2)
    # Back only after its session has ended (a grace period of 0.2 s).
    alice = await cluster.chatClient(server, "alice", backoff=Backoff(base=3, cap=3))
    said = []
    # Said the moment the new session is welcomed, before the login is answered.
    alice.live.onWelcome(lambda welcome: said.append(alice.say("right away")))
    alice.live.drop()
    await allOf([alice], lambda c: said and said[0].called, "the say to be answered")
    outcome = []
    said[0].addBoth(outcome.append)
    assert outcome == [None], outcome
    await allOf([alice], lambda c: ("alice", "right away") in c.heard.messages, "the line heard")
    assert len(alice.heard.newSessions) == 1 and "expired" in alice.heard.newSessions[0]


# In a browser


def test_pageFailsOverToTheWelcomesUrls(redisServer: RedisServer, tmp_path, openChat):  # noqa: F811
    """A Chromium page served by A, A SIGKILLed: the page moves to B by the welcome's URLs and resumes its session there, transcript and name kept."""
    needRedis()
    a, b = OnePort(tmp_path, freePort()), OnePort(tmp_path, freePort())
    try:
        urls = [f"ws://127.0.0.1:{port}/live" for port in (a.port, b.port)]
        options = ("--redis", redisServer.url, "--grace-period", "10",
                   "--public-url", urls[0], "--public-url", urls[1],
                   "--allowed-origin", f"http://127.0.0.1:{a.port}")
        victim, survivor = a.start(*options), b.start(*options)
        alice = openChat(url=victim.url)
        alice.login("alice")
        alice.say("before")
        alice.expectLine("alice: before")
        session = alice.page.evaluate("() => liveSocket.session")
        assert alice.page.evaluate("() => liveSocket.urls") == urls

        harness.Cluster.kill(None, victim)  # SIGKILL by its PID
        expect(alice.page.locator("html")).to_have_attribute("data-live-status", "reconnecting")
        try:
            expect(alice.page.locator("html")).to_have_attribute("data-live-status", "connected")
        except AssertionError as e:
            where = alice.page.evaluate("() => [liveSocket.url, liveSocket.urls]")
            raise AssertionError(f"not back, at {where}; {alice.errors[-3:]}\n{survivor.log()[-2000:]}") from e
        assert alice.page.evaluate("() => liveSocket.url") == urls[1]
        assert alice.page.evaluate("() => liveSocket.session") == session
        alice.say("after")
        expect(alice.scrollArea.locator(".message.user")).to_have_text(["alice: before", "alice: after"])
        expect(alice.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as alice")
        assert alice.page.locator("[data-live-notice]").is_hidden()
        assert pageErrors(alice) == []
    finally:
        a.stopAll()
        b.stopAll()


def test_publicUrlOptions():
    """--public-url takes WebSocket URLs only, and the page's policy lets it connect to them."""
    import pytest
    from twisted.python import usage

    from chatthing.live import LiveSite
    from chatthing.tap import Options

    options = Options()
    options.parseOptions(["--element", "chatthing.chatterbox.chat", "--public-url", "wss://a.example/live",
                          "--public-url", "ws://127.0.0.1:9/live"])
    settings = options["settings"]
    assert settings.publicUrls == ("wss://a.example/live", "ws://127.0.0.1:9/live")
    policy = LiveSite(options["application"], settings=settings).securityHeaders[b"Content-Security-Policy"]
    assert b"connect-src 'self' wss://a.example/live ws://127.0.0.1:9/live;" in policy
    for bad in ("https://a.example/live", "wss:///live", "ws://a.example/live?x=1"):
        with pytest.raises(usage.UsageError, match="--public-url must be"):
            Options().parseOptions(["--element", "chatthing.chatterbox.chat", "--public-url", bad])
