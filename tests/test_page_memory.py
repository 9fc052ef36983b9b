"""
What the server holds for an idle logged-in page (issue 14: at most what a
Node C{ws} server holds), measured with tracemalloc in the server's own
process while the pages live in another (C{tests/idlepages.py}).

The bound is in bytes a page, from what was measured (see
C{chatthing.live._footprint}): about 7,100 before the runtime let go of
what an idle page does not need, about 4,400 after, all of it counted:
Twisted's transport and socket, Autobahn's connection, the runtime's
session and the chat's element, user and share of its room.
"""

import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest_twisted
from conftest import eventually, startChatServer, subprocessEnvironment
from twisted.internet import reactor, tcp, threads

PAGES = 120
ROOM_SIZE = 20

#: Bytes a page may hold: between the two figures above, so that the test
#: fails on the old runtime and leaves room for noise and small additions.
BOUND = 6500

#: The same without what the chat's code allocated: the runtime's,
#: Autobahn's and Twisted's bytes a page (about 5,000 before, 2,900 after).
RUNTIME_BOUND = 4500

IDLE_PAGES = Path(__file__).resolve().parent / "idlepages.py"


async def _openIdlePages(port: int, count: int) -> subprocess.Popen:
    """
    C{count} idle logged-in pages in a process of their own; they stay
    until its standard input is closed (or 60 seconds have passed).
    """
    process = subprocess.Popen(
        [sys.executable, str(IDLE_PAGES), str(port), str(count), str(ROOM_SIZE), "60"],
        env=subprocessEnvironment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    line = await threads.deferToThread(process.stdout.readline)
    assert line.split() == [str(count), "0"], f"pages opened, failed: {line!r}"
    return process


async def _closeIdlePages(process: subprocess.Popen) -> None:
    process.stdin.close()
    try:
        await threads.deferToThread(process.wait, 20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _settled(factory) -> bool:
    """
    Whether every page is welcomed and has had its calls acknowledged.
    """
    return all(c.session is not None for c in factory.connections) and all(
        s._acks._timer is None for s in factory.sessions.values())


#: Log events kept in memory (by an observer of the test run, not the server).
_NOT_LOGS = tracemalloc.Filter(False, "*/twisted/logger/*")

#: What the chat's code allocated, directly or through the runtime (its
#: element, its rooms' history and presence): the rest is the runtime's,
#: Autobahn's and Twisted's.
_NOT_CHAT = tracemalloc.Filter(False, "*/chatthing/chat/*", all_frames=True)


@pytest_twisted.ensureDeferred
async def test_idleLoggedInPageHoldsFewBytes():
    """An idle page logged in to a room of 20 holds under BOUND bytes of the server's memory, under RUNTIME_BOUND without the chat's."""
    # What the tests before left closing (a storm's pages) would be
    # counted with these pages: start once the process has no connection.
    await eventually(lambda: not _openConnections(), "the earlier tests' connections to close", deadline=20)
    server = await startChatServer()
    factory = server.site.liveFactory
    try:
        # Once through everything first: templates, rooms, caches.
        warmUp = await _openIdlePages(server.port, 4)
        await _closeIdlePages(warmUp)
        await eventually(lambda: not factory.sessions, "the warm-up pages to go")
        gc.collect()
        tracemalloc.start(30)
        try:
            before = tracemalloc.take_snapshot()
            pages = await _openIdlePages(server.port, PAGES)
            await eventually(lambda: len(factory.sessions) == PAGES and _settled(factory)
                             and not reactor.getWriters(), "every page to settle")
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        await _closeIdlePages(pages)
        held = _bytesPerPage(after, before, [_NOT_LOGS])
        runtime = _bytesPerPage(after, before, [_NOT_LOGS, _NOT_CHAT])
        top = "\n".join(str(stat) for stat in after.filter_traces([_NOT_LOGS]).compare_to(
            before.filter_traces([_NOT_LOGS]), "lineno")[:8])
        print(f"{PAGES} idle logged-in pages: {held:.0f} bytes a page, {runtime:.0f} without the chat's\n{top}")
        assert held < BOUND, f"{held:.0f} bytes a page (bound {BOUND}); most:\n{top}"
        assert runtime < RUNTIME_BOUND, f"{runtime:.0f} bytes a page without the chat's (bound {RUNTIME_BOUND})"
    finally:
        await server.stop()


def _openConnections() -> list:
    """The TCP connections (either end) the test process's reactor holds."""
    return [r for r in reactor.getReaders() if isinstance(r, tcp.Connection)]


def _bytesPerPage(after, before, filters) -> float:
    stats = after.filter_traces(filters).compare_to(before.filter_traces(filters), "filename")
    return sum(stat.size_diff for stat in stats) / PAGES


def test_startupFrozenOutOfFullCollections():
    """Starting the plugin's top service leaves what start-up made out of the collector's full collections (gc.freeze)."""
    from chatthing.startup import StartupService

    service = StartupService()
    gc.unfreeze()
    try:
        service.startService()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()  # the test run's other objects are collected as before
        service.stopService()
