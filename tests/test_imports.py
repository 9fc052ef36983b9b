"""
Reactor hygiene: importing chatthing installs no reactor, and its clients
connect with the reactor they are given.

Importing C{twisted.internet.reactor} installs the default reactor for the
life of the process, so a module that did it when imported would stop its
user from choosing another (C{asyncioreactor.install()} would raise).  The
imports run in a fresh interpreter each: this test process has its reactor
installed already (pytest-twisted).
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from chatthing.live.client import LiveClient
from chatthing.live.testing import LiveTestClient
from conftest import withDeadline

ROOT = Path(__file__).resolve().parent.parent

#: Imports every module of the package (walking it, so that a new module is
#: never forgotten) and the twistd plugin, then prints what it imported and
#: whether the reactor got installed.  Nothing is skipped: the one module
#: with an optional dependency, C{chatthing.bench.plot}, imports matplotlib
#: only when it draws.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import chatthing
names = ["chatthing"] + [info.name for info in
                         pkgutil.walk_packages(chatthing.__path__, "chatthing.")]
names.append("twisted.plugins.chatthing_plugin")
installedBy = None
for name in names:
    importlib.import_module(name)
    if installedBy is None and "twisted.internet.reactor" in sys.modules:
        installedBy = name
print(json.dumps({"modules": names, "installedBy": installedBy}))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_importingEveryModuleInstallsNoReactor() -> None:
    """Importing every module of chatthing (and the twistd plugin) leaves twisted.internet.reactor out of sys.modules."""
    done = _run(_IMPORT_ALL)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["modules"]) > 50  # the walk found the package's modules
    for name in ("chatthing.client", "chatthing.live.client", "chatthing.live.testing",
                 "chatthing.tap", "chatthing.backplane.redis", "chatthing.bench.rawclient"):
        assert name in report["modules"]
    assert report["installedBy"] is None, f"importing {report['installedBy']} installed the reactor"


def test_anotherReactorCanBeInstalledAfterImportingEverything() -> None:
    """After importing every module of chatthing, asyncioreactor.install() succeeds and that reactor is the one in use."""
    done = _run(_IMPORT_ALL + """
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import reactor
print(type(reactor).__name__)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "AsyncioSelectorReactor"


class _RecordingReactor:
    """
    The real reactor, counting the connections made through it: shows which
    reactor a client really uses.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self.connections: list[tuple[str, int]] = []

    def connectTCP(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connections.append((host, port))
        return self._real.connectTCP(host, port, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest_twisted.ensureDeferred
async def test_liveTestClientConnectsWithItsReactor(chatServer) -> None:
    """LiveTestClient(reactor=...) connects through that reactor, not the global one."""
    recording = _RecordingReactor(reactor)
    client = await LiveTestClient.connect(chatServer.wsUrl, reactor=recording)
    try:
        assert client.welcome is not None
        assert recording.connections == [("127.0.0.1", chatServer.port)]
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_liveClientConnectsWithItsReactor(chatServer) -> None:
    """LiveClient(reactor=...) connects through that reactor and is welcomed."""
    recording = _RecordingReactor(reactor)
    client = LiveClient(chatServer.wsUrl, reactor=recording)
    try:
        await withDeadline(client.connect())
        assert client.welcome is not None
        assert recording.connections == [("127.0.0.1", chatServer.port)]
    finally:
        client.close()
