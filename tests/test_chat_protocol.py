"""
The chat application over real WebSockets: login, alerts, fan-out, leaving.
"""

import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_messageReachesEveryone(chatServer):
    """A message from one user reaches every logged-in page, prefixed by its speaker."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    answer = await alice.call("say", "hello bob")
    assert answer == {"type": "result", "id": 1, "value": None}
    for client in (alice, bob):
        await client.waitFor(lambda c=client: ["alice", "hello bob"] in c.calls("displayUserMessage"))
