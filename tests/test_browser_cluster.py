"""
A real browser on a chat of two twistd processes sharing one Redis: a page
whose process is killed moves to the other through the balancer (a proxy
that switches its target) and carries on, as the same user, losing nothing.
"""

import signal
from contextlib import contextmanager

from cluster import redisServer  # noqa: F401 (a fixture)
from playwright.sync_api import expect
from test_browser import FlakyProxy, browser, openChat, unexpectedErrors  # noqa: F401 (fixtures)


@contextmanager
def aliceAndBobOnTwoProcesses(openChat, startTwistd, redisServer, *extra: str):  # noqa: F811
    """
    Two twistd processes on C{redisServer} (with C{extra} options): alice's
    page reaches the first through a L{FlakyProxy} (the balancer), bob's
    the second directly; both logged in, alice has seen bob join.  Yields
    C{(first, second, proxy, alice, bob)}; the proxy is stopped after.
    """
    shared = ("--redis", redisServer.url, "--grace-period", "20", *extra)
    first, second = startTwistd(*shared), startTwistd(*shared)
    proxy = FlakyProxy(first.port)
    try:
        alice = openChat(url=proxy.url)
        alice.login("alice")
        bob = openChat(url=second.url)
        bob.login("bob")
        alice.expectLine("user bob has joined the room")
        yield first, second, proxy, alice, bob
    finally:
        proxy.stop()


def test_pageMovesToAnotherProcessWhenItsOwnDies(openChat, startTwistd, redisServer):  # noqa: F811
    """
    Kill the process a page is on (SIGKILL) while the other process's user
    talks: the page comes back on the other process, still logged in,
    shows every line once and in order, and can talk; nobody sees it leave.
    """
    with aliceAndBobOnTwoProcesses(openChat, startTwistd, redisServer) as (first, second, proxy, alice, bob):
        alice.say("said on the first process")
        bob.expectLine("said on the first process")

        # The balancer sends new connections to the second process from now
        # on; the first dies without a word.
        proxy._do(lambda: setattr(proxy, "targetPort", second.port))
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        bob.say("said while alice moves")
        alice.expectLine("said while alice moves")

        expect(alice.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as alice")
        alice.say("said on the second process")
        bob.expectLine("said on the second process")
        alice.expectLine("said on the second process")
        second.waitForLog(r"taken over from another server")

        said = ["said on the first process", "said while alice moves", "said on the second process"]
        for page in (alice, bob):
            texts = [line for line in page.lines.all_inner_texts() if "said " in line]
            assert [next(s for s in said if s in line) for line in texts] == said, texts
        expect(bob.lines.filter(has_text="has left")).to_have_count(0)
        assert unexpectedErrors(alice) == [] and unexpectedErrors(bob) == []


def test_drainedPageIsToldOnceAndResumesElsewhere(openChat, startTwistd, redisServer):  # noqa: F811
    """
    SIGTERM the process a page is on: that page shows the restart notice
    once, reconnects (1012) to the other process and carries on, logged
    in; the other process's page is told nothing.
    """
    with aliceAndBobOnTwoProcesses(openChat, startTwistd, redisServer, "--drain-seconds", "0.5") as (
            first, second, proxy, alice, bob):
        proxy._do(lambda: setattr(proxy, "targetPort", second.port))
        first.process.send_signal(signal.SIGTERM)
        alice.expectLine("The server is restarting. You will be reconnected.")
        assert first.process.wait(15) in (0, -signal.SIGTERM)
        bob.say("said after the drain")
        alice.expectLine("said after the drain")
        expect(alice.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as alice")
        alice.say("said by the moved page")
        bob.expectLine("said by the moved page")
        second.waitForLog(r"taken over from another server")

        expect(alice.lines.filter(has_text="The server is restarting")).to_have_count(1)
        expect(bob.lines.filter(has_text="The server is restarting")).to_have_count(0)
        expect(bob.lines.filter(has_text="has left")).to_have_count(0)
        assert unexpectedErrors(alice) == [] and unexpectedErrors(bob) == []
