"""
The collector's young generation, as the server starts (chatthing.startup
L{collectYoungLessOften}, issue 14: the collections a join storm ran): a
storm of logins on a real server with real WebSocket clients, its young
collections counted with C{gc.callbacks}.  Counts, not times.
"""

import gc

import pytest_twisted
from test_presence_batch import connectAll, logIn, startRoom
from twisted.internet.task import Clock

#: Pages in the storm.
STORM = 150


def startTheServersTopService() -> None:
    """
    Start (and stop) the plugin's top service, as twistd does, for what it
    sets up in the process.
    """
    from chatthing.startup import StartupService

    service = StartupService()
    try:
        service.startService()
    finally:
        gc.unfreeze()  # the test run's other objects are collected as before
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_aJoinStormRunsFewYoungCollections(serve):
    """Once the server has started, N pages connecting and logging in run few young collections (on 4999cfc: 70
    young and 6 middle for 150 logins; now 4 and 0)."""
    young: list[int] = []

    def counted(phase: str, info: dict) -> None:
        if phase == "start":
            young.append(info["generation"])

    startTheServersTopService()  # the threshold is put back after the test (conftest)
    room, server = await startRoom(serve, Clock())
    gc.callbacks.append(counted)
    try:
        pages = await connectAll(server, STORM)
        await logIn(pages, [f"young{i:03}" for i in range(STORM)])
    finally:
        gc.callbacks.remove(counted)
    print(f"{STORM} logins: {young.count(0)} young, {young.count(1)} middle collections")
    assert young.count(0) + young.count(1) <= STORM // 10, young
