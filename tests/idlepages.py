"""
Idle logged-in pages in a process of their own, for tests/test_page_memory.py:
so that what the server holds for them can be measured in the test's
process without the clients' own objects.

    python idlepages.py PORT COUNT ROOMSIZE SECONDS

Opens COUNT pages to ws://127.0.0.1:PORT/live (loopback only), ROOMSIZE to a
room, each welcomed and logged in (C{setUsername}) as the bench's pages are;
prints one line, C{opened FAILED}, and keeps them open until its standard
input closes, or SECONDS have passed; then closes them all and exits.
"""

import sys

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred

from chatthing.bench.crowd import PagePlan, Target, openCrowd


async def main(reactor, port: int, count: int, roomSize: int, seconds: float) -> None:
    target = Target("127.0.0.1", port, "/live")
    plans = [PagePlan(target, f"/room/idle-{index // roomSize}", f"idle{index}")
             for index in range(count)]
    crowd = await openCrowd(reactor, plans, 32, "idle pages")
    print(len(crowd.pages), crowd.failed, flush=True)
    done: Deferred = threads.deferToThread(sys.stdin.read)
    done.addTimeout(seconds, reactor)
    await DeferredList([done], consumeErrors=True)
    await crowd.close(reactor, deadline=2.0)


if __name__ == "__main__":
    port, count, roomSize, seconds = sys.argv[1:5]
    task.react(lambda reactor: ensureDeferred(
        main(reactor, int(port), int(count), int(roomSize), float(seconds))))
