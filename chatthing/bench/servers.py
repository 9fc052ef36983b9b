"""
The processes the bench starts and stops: chatthing's C{twistd chat-widget},
the baseline server, a throwaway C{redis-server}, and the load generator;
each pinned to its core where C{taskset} exists, with its file limit raised
for ten thousand connections.

A server's log goes to a file, not a pipe: with ten thousand logins a pipe
would need a reader, which would take CPU from the very machine being
measured.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import chatthing

from .procstat import raiseFileLimit

#: How the bench runs chatthing: the chat, with the per-page limits raised
#: so that ten senders may say as fast as the server can deliver, and
#: enough connections for the idle scenario and a room of 50,000 (the
#: report says so).
CHAT_OPTIONS = ["--rate", "100000", "--burst", "100000", "--max-connections", "60000"]

#: Seconds a server may take to say where it listens.
START_DEADLINE = 30.0

#: Seconds a process may take to stop after SIGTERM before it is killed:
#: short, since nothing the bench measures happens while servers stop.
STOP_DEADLINE = 1.0

#: Where the bench's servers listen: loopback, a free port, and a listen
#: queue as long as the Node peer's, so that a storm of connections is
#: accepted, not dropped and retried a second later (Twisted's default
#: queue holds 50; the kernel caps it at C{net.core.somaxconn}).
LISTEN = "tcp:0:interface=127.0.0.1:backlog=1024"

_LISTENING = re.compile(r"listening on http://([^/:\s]+):(\d+)/")


class StartFailed(Exception):
    """
    A process the bench needs did not start.
    """


@dataclass(frozen=True)
class CoreLayout:
    """
    Which CPUs the servers (and Redis) and the load generator run on, as
    C{taskset -c} lists; L{None} where they are not pinned.
    """

    server: str | None
    load: str | None

    @classmethod
    def forThisMachine(cls) -> "CoreLayout":
        """
        With C{taskset} and two CPUs or more: the load generator on the
        last, the server side on the others (on CPU 0 alone, with two).
        """
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if shutil.which("taskset") is None or len(cores) < 2:
            return cls(None, None)
        return cls(",".join(str(core) for core in cores[:-1]), str(cores[-1]))

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (needs taskset and 2 CPUs)"
        return f"servers and Redis on CPU {self.server}, load generator on CPU {self.load}"


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus is not None else command


def environment() -> dict[str, str]:
    """
    This environment, with the folder holding the C{chatthing} package
    first on C{PYTHONPATH} when it also holds chatthing's twistd plugin (a
    checkout), so that C{twistd} finds the plugin there.
    """
    root = Path(chatthing.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if (root / "twisted" / "plugins" / "chatthing_plugin.py").exists():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


@dataclass
class ServerProcess:
    """
    A server the bench started, once it listens.
    """

    label: str
    process: subprocess.Popen
    logPath: Path
    host: str = ""
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/live"

    def logTail(self, lines: int = 20) -> str:
        try:
            return "".join(self.logPath.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""

    def waitUntilListening(self) -> None:
        end = time.monotonic() + START_DEADLINE
        while time.monotonic() < end:
            match = _LISTENING.search(self.logPath.read_text(errors="replace"))
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        stop(self.process)
        raise StartFailed(f"{self.label} did not start listening; its log ends:\n{self.logTail()}")

    def stop(self) -> None:
        stop(self.process)


def stop(*processes: subprocess.Popen) -> None:
    """
    Stop C{processes} (each by its id) with SIGTERM, all at once, then
    SIGKILL those that linger.
    """
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    end = time.monotonic() + STOP_DEADLINE
    for process in running:
        try:
            process.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launchServer(label: str, command: list[str], logPath: Path, cpus: str | None) -> ServerProcess:
    """
    Start a server; L{ServerProcess.waitUntilListening} waits for it.
    """
    with open(logPath, "wb") as log:
        process = subprocess.Popen(pinned(command, cpus), env=environment(), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, preexec_fn=raiseFileLimit)
    return ServerProcess(label, process, logPath)


def chatCommand(redisURL: str | None = None) -> list[str]:
    """
    C{twistd -n chat-widget --element=chatthing.chatterbox.chat} on a free
    loopback port, with L{CHAT_OPTIONS} (and C{--redis}).
    """
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
               "-n", "--pidfile=", "--logfile=-", "chat-widget",
               "--element=chatthing.chatterbox.chat", "--listen", LISTEN,
               *CHAT_OPTIONS]
    return command + (["--redis", redisURL] if redisURL is not None else [])


def startChats(directory: Path, labels: list[str], cpus: str | None,
               redisURL: str | None = None) -> list[ServerProcess]:
    """
    Start a chat server for each of C{labels}, all at once (each takes a
    second or two to import what it needs), and wait until all listen.
    """
    started = [launchServer(label, chatCommand(redisURL), directory / f"{label}.log", cpus)
               for label in labels]
    try:
        for server in started:
            server.waitUntilListening()
    except StartFailed:
        stop(*(server.process for server in started))
        raise
    return started


def startBaseline(directory: Path, cpus: str | None) -> ServerProcess:
    command = [sys.executable, "-m", "chatthing.bench.baseline", "--listen", LISTEN]
    server = launchServer("baseline", command, directory / "baseline.log", cpus)
    server.waitUntilListening()
    return server


def redisExecutable() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answersPing(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """
    A C{redis-server} on a free loopback port that saves nothing to disk.
    """

    process: subprocess.Popen
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, cpus: str | None, attempts: int = 3) -> "RedisProcess":
        executable = redisExecutable()
        if executable is None:
            raise StartFailed("redis-server is not installed")
        for _ in range(attempts):
            port = freePort()
            command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(directory)]
            with open(directory / "redis.log", "ab") as log:
                process = subprocess.Popen(pinned(command, cpus), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=raiseFileLimit)
            end = time.monotonic() + 10
            while time.monotonic() < end and process.poll() is None:
                if answersPing(port):
                    return cls(process, port)
                time.sleep(0.05)
            stop(process)  # the port was taken meanwhile, or it failed: again
        raise StartFailed(f"redis-server did not start; see {directory / 'redis.log'}")

    def stop(self) -> None:
        stop(self.process)


def runLoadGenerator(arguments: list[str], cpus: str | None, deadline: float) -> str:
    """
    Run C{python -m chatthing.bench.load ARGUMENTS} to its end; what it
    printed on standard output (its progress bars go to ours, on standard
    error).
    """
    command = pinned([sys.executable, "-m", "chatthing.bench.load", *arguments], cpus)
    process = subprocess.Popen(command, env=environment(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, preexec_fn=raiseFileLimit)
    try:
        output, _ = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise StartFailed(f"the load generator did not finish within {deadline:.0f}s") from None
    if process.returncode != 0:
        raise StartFailed(f"the load generator failed (exit status {process.returncode})")
    return output.decode("utf-8")
