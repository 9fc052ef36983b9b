"""
A join storm in a real browser (issue 14): 200 pages open the lobby of one
C{twistd -n chat-widget} process, then all log in at once; one of them loses
its connection (a TCP reset, through a L{FlakyProxy}) while the storm runs
and is kept off for a while.  In the end every page shows the same presence
list (all 200 names) and the same scroll-area text, and the page that
dropped resumed its session: no new login, nothing doubled, nothing missed.

The pages are compared with each other, never with fixed text, so the test
holds whether each join is its own line ("user ann has joined the room") or
joins are gathered into fewer lines.

Holding 200 pages on a 2-core machine (see L{storm_browser}): one headless
Chromium, a few contexts, each with one page Playwright drives that opens
the rest of its share as popups (C{window.open}: top-level pages, each with
its own connection and session, in its opener's renderer process).  The
opener reaches its popups' documents (same origin), so one C{evaluate} per
context fires every login at once, and one reads what every page shows.

Fixtures and helpers are C{test_browser}'s (see its docstring for how
Playwright and pytest-twisted share the process); every wait is for a
condition with a deadline, never a sleep.
"""

import re
import time
from collections import Counter

import pytest
from conftest import TwistdServer
from playwright.sync_api import Browser
from storm_browser import PageGroup, TrippingProxy, browserUse, openGroups, stormBrowser  # noqa: F401
from test_browser import server  # noqa: F401 (fixture)
from test_other_browsers import waitUntil

#: Pages that log in at once.
PAGES = 200

#: Browser contexts the pages are spread over (each its own cookie jar and
#: connection pool, as separate users would be), besides the dropping page's.
CONTEXTS = 4

#: The server's log line for a login of the storm.
JOINED = re.compile(r"\] storm\d{3} joined lobby$")

#: Bytes of the storm the dropping page gets before its connection is cut:
#: a few frames, far less than the storm sends it.
TRIP_BYTES = 1024

#: Seconds the storm may take to settle on a loaded 2-core machine.
STORM_DEADLINE = 240.0


def joinsLogged(server: TwistdServer) -> int:
    """
    How many of the storm's logins the server has logged.
    """
    return sum(1 for line in list(server.logLines) if JOINED.search(line))


def settled(groups: list[PageGroup], seen: list) -> list[dict] | None:
    """
    What every page shows, once each is connected and shows every name, the
    pages but the first (the dropping one) show the same lines, and the
    first shows at least as many; else L{None}.  How far the pages were
    (each C{[names, lines, state]}: how many of each) goes in C{seen}.
    """
    seen[:] = [progress for group in groups for progress in group.progress()]
    if any(names < PAGES or state != "connected" for names, _, state in seen) or seen[0][1] < seen[1][1]:
        return None
    everyone = [shown for group in groups for shown in group.shown()]
    crowd = everyone[1:]
    if any((shown["names"], shown["lines"]) != (crowd[0]["names"], crowd[0]["lines"]) for shown in crowd):
        return None
    return everyone


@pytest.mark.timeout(420)
def test_joinStorm(stormBrowser: Browser, server):  # noqa: F811
    """200 pages log in at once: all end with the same presence list and scroll-area text; one that drops mid-storm resumes once."""
    started = time.monotonic()
    proxy = TrippingProxy(server.port)
    try:
        # One page through the proxy, the others straight to the server.
        dropper, *crowd = openGroups(stormBrowser, [proxy.url, *[server.url] * CONTEXTS],
                                     [1, *PageGroup.shares(PAGES - 1, CONTEXTS)])
        opened = time.monotonic()
        before = dropper.shown()[0]
        assert before["lines"] == [] and before["names"] == [], before
        assert sum(group.size for group in (dropper, *crowd)) == PAGES

        # The storm: every page's login at once.  The dropper's connection
        # is reset in the middle of what the server sends it, and kept off
        # (new connections reset) until it has knocked twice.
        proxy.tripAfter(TRIP_BYTES)
        for group in (dropper, *crowd):
            group.logIn()
        waitUntil(lambda: proxy.tripped, "the dropping page's connection to be cut", STORM_DEADLINE)
        cut = time.monotonic()
        joinedAtCut = joinsLogged(server)
        waitUntil(lambda: dropper.controller.evaluate("() => liveSocket.backoff.attempts >= 2"),
                  "the dropped page to be refused twice", STORM_DEADLINE)
        proxy.block(False)
        unblocked = time.monotonic()

        seen: list = []
        try:
            everyone = waitUntil(lambda: settled([dropper, *crowd], seen),
                                 "every page to be connected and show all names, and the same lines",
                                 STORM_DEADLINE)
        except AssertionError as e:
            raise AssertionError(f"{e}; pages seen [names, lines, state]: {Counter(map(str, seen))}, "
                                 f"the dropping page {seen[0]}") from e
        stormed = time.monotonic()
        use = browserUse()
    finally:
        proxy.stop()

    names = [name for group in (dropper, *crowd) for name in group.names]
    first = everyone[1]
    assert sorted(first["names"]) == sorted(names)
    # The dropped page shows what the others show: nothing doubled, nothing
    # missed, in the same order.
    doubled = Counter(everyone[0]["lines"]) - Counter(first["lines"])
    assert not doubled, f"the dropped page shows these lines more often: {doubled}"
    assert (everyone[0]["names"], everyone[0]["lines"]) == (first["names"], first["lines"])
    assert first["lines"]
    # Each login announced at most once (once each, unless joins are
    # gathered into lines naming only some), and nobody left.
    mentions = Counter(name for line in first["lines"] for name in names if name in line)
    assert max(mentions.values()) == 1, mentions.most_common(3)
    assert not [line for line in first["lines"] if " left" in line]
    for shown, name in zip(everyone, names):
        assert (shown["loggedInAs"], shown["notice"]) == (f"Logged in as {name}", None), shown

    # The dropped page missed part of the storm, and resumed its session:
    # the same session, still logged in, no "new session" notice.
    after = everyone[0]
    assert proxy.refused >= 1
    assert after["session"] == before["session"]
    # The server saw each page log in once, and each reconnection resume.
    assert joinsLogged(server) == PAGES
    resumes = sum(state == "reconnecting" for shown in everyone for state, *_ in shown["states"])
    assert sum(1 for line in list(server.logLines) if "resumed from" in line) == resumes
    dropped = after["states"][0]
    assert dropped[0] == "reconnecting" and dropped[1] < PAGES, after["states"]
    errors = [error for group in (dropper, *crowd) for error in group.errors
              if "WebSocket connection to" not in error]
    assert errors == []
    print(f"\njoin storm: {PAGES} pages opened in {opened - started:.1f} s, logged in and settled "
          f"in {stormed - opened:.1f} s (cut after {cut - opened:.1f} s, off for "
          f"{unblocked - cut:.1f} s); {len(first['lines'])} lines each; the dropped page was cut "
          f"when the server had logged {joinedAtCut} logins; it showed {dropped[1]} names then; "
          f"{resumes} reconnection(s) in all; {use}")
