"""
Reliable delivery under a flaky network: many pages chat while their
connections are broken at random (no closing handshake, as when a network
fails) and resumed within the grace period.  Every page must end up with
every message exactly once, in the room's one order, without losing its
session or being announced as having left.

The schedule (who speaks when, who drops when and for how long) comes from
a seeded random generator; the interleaving on the wire still varies from
run to run, which is the point.  The chat runs for L{CHAT_SECONDS}; every
wait after it is for a condition with a deadline.  Loopback only.
"""

import random
from collections import Counter

import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import ensureDeferred, gatherResults

#: Pages in the room.
CLIENTS = 32

#: Seconds the pages chat (and drop) for.
CHAT_SECONDS = 10.0

#: Seconds the room may take to deliver everything once everyone is back.
SETTLE_DEADLINE = 20.0

#: Seconds the whole chaos phase (talking, dropping, resuming) may take.
CHAOS_DEADLINE = CHAT_SECONDS + 20.0

SEED = 3


def pause(seconds: float):
    """
    Let C{seconds} pass (pacing the simulated users; not a wait for a condition).
    """
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_chatThroughRandomDrops(chatServer):
    """32 pages chat for 10 s through random drops and resumes; each gets every message once, in one order."""
    rng = random.Random(SEED)
    names = [f"user{n:02d}" for n in range(CLIENTS)]
    clients = {}
    for name in names:
        clients[name] = await chatServer.login(name)
    sessions = {name: client.session for name, client in clients.items()}
    said: dict[str, list[str]] = {name: [] for name in names}
    callIds: dict[str, list[int]] = {name: [] for name in names}
    resumedWith: list[tuple[str, dict]] = []
    drops = Counter()
    end = reactor.seconds() + CHAT_SECONDS

    async def talk(name: str) -> None:
        client = clients[name]
        while True:
            await pause(rng.uniform(0.2, 0.8))
            if reactor.seconds() >= end:
                return
            # Sent now if connected, else kept and sent when resumed.
            text = f"{name} says {len(said[name])}"
            callIds[name].append(client.startCall("say", text))
            said[name].append(text)

    async def flake(name: str) -> None:
        client = clients[name]
        while True:
            await pause(rng.uniform(0.2, 2.5))
            if reactor.seconds() >= end:
                return
            client.drop()
            drops[name] += 1
            await pause(rng.uniform(0.0, 1.0))  # well within the 30 s grace period
            resumedWith.append((name, await client.resume()))

    chaos = gatherResults(
        [ensureDeferred(talk(name)) for name in names]
        + [ensureDeferred(flake(name)) for name in names],
        consumeErrors=True,
    )
    chaos.addTimeout(CHAOS_DEADLINE, reactor)
    await chaos

    # Everyone is back and nobody speaks: everything must arrive.
    assert all(not client.isClosed for client in clients.values())
    everything = Counter((name, text) for name in names for text in said[name])
    total = sum(everything.values())
    assert total > 10 * CLIENTS, f"only {total} messages were sent"
    assert sum(drops.values()) > 2 * CLIENTS, f"only {sum(drops.values())} drops"
    for name, client in clients.items():
        for ident in callIds[name]:
            answer = await client.answerTo(ident, f"{name}'s call {ident}", SETTLE_DEADLINE)
            assert answer["type"] == "result", answer
        await client.waitFor(
            lambda client=client: len(client.calls("displayUserMessage")) >= total,
            f"{name} to see all {total} messages", SETTLE_DEADLINE,
        )

    first = [tuple(args) for args in clients[names[0]].calls("displayUserMessage")]
    assert Counter(first) == everything, "some message is missing or was shown twice"
    for name in names:
        # Each speaker's messages keep the order they were sent in...
        assert [text for who, text in first if who == name] == said[name]
    for name, client in clients.items():
        # ...and every page shows the room's one order.
        assert [tuple(args) for args in client.calls("displayUserMessage")] == first, name
        assert client.duplicates == 0, f"{name} was sent {client.duplicates} frames twice"
        assert client.session == sessions[name], f"{name} lost its session"
        assert not any("has left" in args[0] for args in client.calls("displayMessage")), name
        assert client.errors() == [], (name, client.errors())
    assert len(resumedWith) == sum(drops.values())
    assert all(frame["type"] == "resumed" for _, frame in resumedWith), [
        (name, frame) for name, frame in resumedWith if frame["type"] != "resumed"
    ]
    assert sorted(chatServer.room.online()) == names
