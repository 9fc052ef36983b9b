"""
The Node peer: a minimal broadcast server on Node's C{ws}
(C{chatthing/bench/peers/node-ws/server.mjs}), speaking the baseline's wire
subset, so that the bench can say where chatthing stands next to the
fastest common JavaScript server, measured in the same run on the same
core.

Its files ship inside the package; C{ws} is not shipped but installed,
the first time, with C{npm ci --omit=dev} (the version pinned by the
shipped C{package-lock.json}) into a folder of the user's cache, named
after the lock file's hash so that a new pin installs afresh.  Without
C{node} or C{npm} the bench runs without the peer and says why.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .servers import ServerProcess, StartFailed, launchServer

#: The peer's files, as shipped in the package.
PEER_FILES = Path(__file__).resolve().parent / "peers" / "node-ws"

#: Seconds C{npm ci} may take.
INSTALL_DEADLINE = 300.0


class PeerUnavailable(Exception):
    """
    The Node peer cannot run here: the message says why, and what to do.
    """


def cacheRoot() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chatthing" / "bench"


def installed(cache: Path | None = None) -> Path:
    """
    The folder the peer runs from, with C{ws} installed in it (installed
    now if it is not yet).

    @raise PeerUnavailable: without C{node} or C{npm}, or if C{npm ci}
        fails.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PeerUnavailable("node and npm are not installed: the Node ws peer was skipped "
                              "(apt-get install nodejs npm)")
    lock = (PEER_FILES / "package-lock.json").read_bytes()
    folder = (cache or cacheRoot()) / f"node-ws-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (folder / "node_modules" / "ws" / "package.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PEER_FILES / name, folder / name)
        try:
            done = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund",
                                   "--loglevel=error"], cwd=folder, capture_output=True,
                                  text=True, timeout=INSTALL_DEADLINE, check=False)
        except subprocess.TimeoutExpired:
            raise PeerUnavailable(f"npm ci took more than {INSTALL_DEADLINE:.0f}s in {folder}: "
                                  "the Node ws peer was skipped") from None
        if done.returncode != 0:
            raise PeerUnavailable(f"npm ci failed in {folder} (the Node ws peer was skipped): "
                                  f"{(done.stderr or done.stdout).strip()[-300:]}")
    # The server, always the shipped one, beside its node_modules.
    shutil.copyfile(PEER_FILES / "server.mjs", folder / "server.mjs")
    return folder


def startNodePeer(directory: Path, cpus: str | None, folder: Path) -> ServerProcess:
    """
    Start the peer from C{folder} (L{installed}) on a free loopback port.
    """
    node = shutil.which("node")
    if node is None:
        raise StartFailed("node is not installed")
    command = [node, str(folder / "server.mjs"), "--host", "127.0.0.1", "--port", "0"]
    server = launchServer("node-ws", command, directory / "node-ws.log", cpus)
    server.waitUntilListening()
    return server
