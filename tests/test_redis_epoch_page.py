"""
The chat page in Chromium when Redis lost its data (a C{redis-server} with
nothing saved, restarted): a page sees the changed C{epoch} (in an C{epoch}
frame if connected then, else in the C{resumed} frame of its session or, away
too long, in its new session's C{welcome}) and says so in plain words, once;
its lines stay, the history Redis still has is shown, none doubled, and the
chat goes on.

One twistd with C{--redis}; Alice's page goes through a L{FlakyProxy}, whose
L{FlakyProxy.cut} breaks her connection; Bob's page never drops.  Every wait
is for a condition with a deadline.
"""

from contextlib import contextmanager
from typing import Callable

import pytest
from cluster import RedisServer, needRedis
from playwright.sync_api import expect
from test_browser import FlakyProxy, browser, openChat, unexpectedErrors  # noqa: F401 (fixtures)

#: What the page says when the store lost what it kept (js/ChatThing.js).
STORE_LOST = "The server lost its stored history; earlier messages may be missing."


@pytest.fixture
def forgetfulRedis(tmp_path):
    """
    A C{redis-server} that saves nothing, stopped after the test.
    """
    needRedis()
    redis = RedisServer(tmp_path / "redis", appendonly=False)
    redis.start()
    yield redis
    redis.stop()


@contextmanager
def aliceAndBob(openChat, startTwistd, redis: RedisServer, *extra: str):
    """
    One twistd on C{redis} (with C{extra} options), Alice's page through a
    L{FlakyProxy} and Bob's straight to it, both logged in, and Alice's
    "before the loss" seen by Bob: C{(server, proxy, alice, bob)}.
    """
    server = startTwistd("--redis", redis.url, *extra)
    proxy = FlakyProxy(server.port)
    try:
        alice, bob = (openChat(url=url) for url in (proxy.url, server.url))
        for chat, name in ((alice, "alice"), (bob, "bob")):
            chat.login(name)
        alice.say("before the loss")
        bob.expectLine("alice: before the loss")
        yield server, proxy, alice, bob
        assert unexpectedErrors(alice) == [] and bob.errors == []
    finally:
        proxy.stop()


def resumeThrough(proxy: FlakyProxy, chat, meanwhile: Callable[[], None] = lambda: None) -> None:
    """
    Break C{chat}'s connection (through C{proxy}), do C{meanwhile()}, and
    wait until its page has resumed the same session.
    """
    session = chat.page.evaluate("() => globalThis.liveSocket.session")
    chat.page.evaluate("""() => {
        window.liveStates = [];
        globalThis.liveSocket.onStateChange((state) => window.liveStates.push(state));
    }""")
    proxy.cut()
    meanwhile()
    chat.page.wait_for_function("() => window.liveStates.includes('reconnecting') "
                                "&& globalThis.liveSocket.state === 'connected'")
    assert chat.page.evaluate("() => globalThis.liveSocket.session") == session


def test_redisLostItsDataPageToldOnce(openChat, startTwistd, forgetfulRedis):
    """A page that resumes after Redis lost its data, and one connected throughout, say so once, keep their lines (none doubled), and chat on."""
    with aliceAndBob(openChat, startTwistd, forgetfulRedis) as (server, proxy, alice, bob):
        bob.say("me too")
        alice.expectLine("bob: me too")
        first = alice.page.evaluate("() => globalThis.liveSocket.epoch")
        assert isinstance(first, str) and first

        # A drop while Redis kept its data: same epoch, nothing said.
        resumeThrough(proxy, alice)
        assert alice.page.evaluate("() => globalThis.liveSocket.epoch") == first

        def restartRedis() -> None:
            # While Alice is away: she learns of it as she resumes.
            forgetfulRedis.kill()
            forgetfulRedis.start()
            server.waitForLog(r"Redis lost what it kept")
            proxy.block(False)

        proxy.block(True)
        resumeThrough(proxy, alice, restartRedis)
        notice = alice.lines.filter(has_text=STORE_LOST)
        expect(notice).to_have_count(1)
        assert alice.page.evaluate("() => globalThis.liveSocket.epoch") != first

        # Another drop under the new epoch: not said again.
        resumeThrough(proxy, alice)
        alice.say("after the loss")
        bob.expectLine("alice: after the loss")
        bob.say("still here")
        alice.expectLine("bob: still here")
        expect(notice).to_have_count(1)
        conversation = ["alice: before the loss", "bob: me too", "alice: after the loss", "bob: still here"]
        expect(alice.scrollArea.locator(".message.user")).to_have_text(conversation)
        expect(bob.scrollArea.locator(".message.user")).to_have_text(conversation)
        # Bob's page never dropped: told by an "epoch" frame, once.
        expect(bob.lines.filter(has_text=STORE_LOST)).to_have_count(1)


def test_redisLostItsDataNewSessionShowsWhatExistsOnce(openChat, startTwistd, forgetfulRedis):
    """A page away past its grace period while Redis lost its data: its new session says so once, shows the history Redis has under its kept lines, none doubled."""
    with aliceAndBob(openChat, startTwistd, forgetfulRedis, "--grace-period", "1") as (server, proxy, alice, bob):
        proxy.block(True)
        proxy.cut()
        server.waitForLog(r"alice left")
        forgetfulRedis.kill()
        forgetfulRedis.start()
        server.waitForLog(r"Redis lost what it kept")
        bob.expectLine("back in touch")
        bob.say("said while alice was away")
        proxy.block(False)

        alice.expectLine("you are logged in again as alice")
        notice = alice.lines.filter(has_text=STORE_LOST)
        expect(notice).to_have_count(1)
        # What Redis has now is shown, after the lines the page kept.
        expect(alice.scrollArea.locator(".message.user")).to_have_text(
            ["alice: before the loss", "bob: said while alice was away"])
        alice.say("back")
        bob.expectLine("alice: back")
        expect(alice.scrollArea.locator(".message.user")).to_have_text(
            ["alice: before the loss", "bob: said while alice was away", "alice: back"])
        expect(notice).to_have_count(1)
