"""
The load generator: a process of its own, so that its CPU is not the
server's and the bench can pin it to another core.

    python -m chatthing.bench.load --url ws://127.0.0.1:8080/live --scenario fanout ...

It opens its pages, runs the scenarios it is given, and writes what it
measured as one JSON object on standard output; its progress bars go to
standard error.  C{chatthing bench} starts it; it can be run by hand too.
"""

import gc
import json
import secrets
import string
import sys

from twisted.internet import task
from twisted.internet.defer import ensureDeferred
from twisted.python import usage

from ..commandline import parseCommandLine
from . import scaling, storm, traffic
from .crowd import Crowd, PagePlan, Target, openCrowd
from .meter import residentBytes
from .procstat import raiseFileLimit

#: What the load generator knows how to run.
SCENARIOS = ("fanout", "latency", "idle", "scaling", "joinstorm", "room")


class LoadOptions(usage.Options):
    synopsis = "--url ws://HOST:PORT/live [--url ...] --scenario NAME [--scenario ...] [options]"
    longdesc = ("Open pages on live chat servers, run load scenarios, and print what was "
                "measured as JSON on standard output.")
    optParameters = [
        ["receivers", None, 1000, "Pages that only listen, for fanout and latency.", int],
        ["senders", None, 10, "Pages that say the messages.", int],
        ["probes", None, 50, "Receivers that time each message (latency).", int],
        ["fanout-messages", None, 200, "Messages each sender says in the fanout scenario.", int],
        ["in-flight", None, 8, "Calls each fanout sender keeps waiting for an answer.", int],
        ["latency-rate", None, 50.0, "Messages a second, all senders together.", float],
        ["latency-seconds", None, 20.0, "How long the latency scenario sends.", float],
        ["idle", None, 10000, "Idle pages to open.", int],
        ["idle-room-size", None, 0, "Idle pages in each room (0: all in one).", int],
        ["concurrency", None, 50, "Pages being opened at once (fanout, latency).", int],
        ["idle-concurrency", None, 64, "Pages being opened at once (idle).", int],
        ["names", None, None, "Prefix of the usernames [default: random]."],
        ["redis-pid", None, None, "Process id of the servers' Redis, to measure its CPU.", int],
        ["one-url", None, None, "scaling: the one server that the --url servers are measured "
         "against (ws://HOST:PORT/live)."],
        ["one-server-pid", None, None, "scaling: the process id of --one-url's server.", int],
        ["rounds", None, 3, "scaling: rounds of fanout on each side.", int],
        ["storm-pages", None, 2000, "joinstorm: pages logging in to one room at once.", int],
        ["storm-concurrency", None, 100, "joinstorm, room: pages being opened at once.", int],
        ["room-pages", None, 20000, "room: logged-in pages in one room.", int],
        ["room-rate", None, 1.0, "room: messages a second, once all are in.", float],
        ["room-seconds", None, 20.0, "room: how long they are sent.", float],
        ["room-senders", None, 2, "room: pages (of --room-pages) that say them.", int],
        ["pages-per-source", None, storm.PAGES_PER_SOURCE,
         "joinstorm, room: pages connecting from each loopback address (127.0.0.2, ...).", int],
    ]
    optFlags = [
        ["no-presence", None, "joinstorm, room: the server keeps no presence list (a peer): "
         "a page is in once its login is answered."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["url"] = []
        self["scenario"] = []
        self["server-pid"] = []

    def opt_url(self, url: str) -> None:
        """
        The WebSocket of a server (ws://HOST:PORT/live), repeatable: pages
        are spread over them in turn.
        """
        try:
            self["url"].append(Target.fromURL(url))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_scenario(self, name: str) -> None:
        """
        fanout, latency, idle or scaling; repeatable, run in that order
        (scaling: fanout on --one-url and on the --url servers in turn).
        """
        if name not in SCENARIOS:
            raise usage.UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, not {name!r}")
        self["scenario"].append(name)

    def opt_server_pid(self, pid: str) -> None:
        """
        Process id of a server, to measure its CPU and memory; repeatable.
        """
        try:
            self["server-pid"].append(int(pid))
        except ValueError:
            raise usage.UsageError(f"--server-pid must be a process id, not {pid!r}") from None

    def postOptions(self) -> None:
        if not self["url"]:
            raise usage.UsageError("give at least one --url")
        if not self["scenario"]:
            raise usage.UsageError("give at least one --scenario")
        if self["senders"] < 1 and {"fanout", "latency"} & set(self["scenario"]):
            raise usage.UsageError("--senders must be 1 or more")
        if "scaling" in self["scenario"]:
            if len(self["scenario"]) > 1:
                raise usage.UsageError("scaling runs alone")
            if self["one-url"] is None:
                raise usage.UsageError("scaling needs --one-url")
            try:
                self["one-url"] = Target.fromURL(self["one-url"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            if self["rounds"] < 1:
                raise usage.UsageError("--rounds must be 1 or more")
        if "room" in self["scenario"] and not 1 <= self["room-senders"] <= self["room-pages"]:
            raise usage.UsageError("--room-senders must be 1 to --room-pages")
        if self["names"] is None:
            self["names"] = "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))


def roomPlans(options: LoadOptions, targets: list[Target], prefix: str) -> list[PagePlan]:
    """
    The pages of the fanout and latency scenarios: the receivers (C{probes}
    of them probes, spread evenly among them, the others read in bulk),
    then the senders, all in the lobby, spread over C{targets} in turn.

    Spread, not the first ones: a server that sends a room's message to its
    pages in the order they connected (Node C{ws}'s C{Set} of clients, a
    dict of subscribers) reaches its first pages before the rest, so probes
    that connected first would time the start of each fan-out, not what the
    room's pages see.
    """
    count, probes = options["receivers"], min(options["probes"], options["receivers"])
    spread = {k * count // probes for k in range(probes)} if probes else set()
    receivers = [PagePlan(targets[index % len(targets)], "/", f"{prefix}r{index}",
                          probe=index in spread, bulk=index not in spread)
                 for index in range(count)]
    senders = [PagePlan(targets[index % len(targets)], "/", f"{prefix}s{index}")
               for index in range(options["senders"])]
    return receivers + senders


async def openRoom(reactor, options: LoadOptions, targets: list[Target], prefix: str,
                   label: str = "connecting and logging in") -> tuple[Crowd, list]:
    """
    Open the room's pages on C{targets}, and wait for the announcements of
    their logins to end: the crowd, and its senders.
    """
    crowd: Crowd = await openCrowd(reactor, roomPlans(options, targets, prefix),
                                   options["concurrency"], label)
    settled = await traffic.settle(reactor, crowd, "login: announcements")
    crowd.login = {**crowd.summary(), "settleSeconds": settled["seconds"],
                   "stillSending": settled["stillSending"]}
    return crowd, [page for page in crowd.slots[options["receivers"]:] if page is not None]


async def bigRoom(reactor, options: LoadOptions, serverPids: list[int],
                  helperPids: list[int]) -> dict:
    """
    The room scenario: a join storm of C{--room-pages} pages, then a few of
    them chat at C{--room-rate} for C{--room-seconds}; the storm's figures,
    the chat's latency and losses, and the server's memory per page.
    """
    senders = options["room-senders"]
    probes = min(options["probes"], options["room-pages"] - senders)
    figures, crowd = await storm.joinStorm(
        reactor, options["url"], options["room-pages"], options["storm-concurrency"],
        options["names"] + "b", serverPids, helperPids, not options["no-presence"],
        options["pages-per-source"], probes, senders)
    gc.freeze()
    talkers = [page for page in crowd.slots[-senders:] if page is not None]
    listeners = [page for page in crowd.slots[:probes] if page is not None]
    results: dict = {"storm": figures, "pages": figures["connected"]}
    if talkers:
        results["chat"] = await traffic.latency(
            reactor, crowd, talkers, listeners, options["room-rate"], options["room-seconds"],
            serverPids, helperPids)
    else:
        results["chat"] = {"error": "the senders could not log in"}
    rss = residentBytes(serverPids)
    results["rssBytes"] = rss
    results["rssBytesPerPage"] = rss / figures["connected"] if rss and figures["connected"] else None
    await crowd.close(reactor, deadline=2.0)
    gc.unfreeze()
    return results


async def runScenarios(reactor, options: LoadOptions) -> dict:
    serverPids = options["server-pid"]
    helperPids = [options["redis-pid"]] if options["redis-pid"] else []
    results: dict = {"scenarios": {}}
    roomScenarios = [name for name in options["scenario"] if name in ("fanout", "latency")]
    if roomScenarios:
        crowd, senders = await openRoom(reactor, options, options["url"], options["names"])
        results["login"] = crowd.login
        # Nothing allocated so far will be freed before the end: keep the
        # collector from walking it during the measured windows.
        gc.freeze()
        probes = [page for page in crowd.pages if page.probe]
        for index, name in enumerate(roomScenarios):
            if not senders:
                results["scenarios"][name] = {"error": "the pages could not be opened",
                                              "login": crowd.summary()}
                continue
            if index:
                await traffic.settle(reactor, crowd, "settling")
            if name == "fanout":
                results["scenarios"][name] = await traffic.fanout(
                    reactor, crowd, senders, options["fanout-messages"], options["in-flight"],
                    serverPids, helperPids)
            else:
                results["scenarios"][name] = await traffic.latency(
                    reactor, crowd, senders, probes, options["latency-rate"],
                    options["latency-seconds"], serverPids, helperPids)
        await crowd.close(reactor, deadline=1.0)
        gc.unfreeze()
    if "idle" in options["scenario"]:
        results["scenarios"]["idle"] = await traffic.idle(
            reactor, options["url"], options["idle"], options["idle-room-size"],
            options["idle-concurrency"], options["names"], serverPids, helperPids)
    if "joinstorm" in options["scenario"]:
        figures, crowd = await storm.joinStorm(
            reactor, options["url"], options["storm-pages"], options["storm-concurrency"],
            options["names"], serverPids, helperPids, not options["no-presence"],
            options["pages-per-source"])
        results["scenarios"]["joinstorm"] = figures
        await crowd.close(reactor, deadline=1.0)
    if "room" in options["scenario"]:
        results["scenarios"]["room"] = await bigRoom(reactor, options, serverPids, helperPids)
    if "scaling" in options["scenario"]:
        one, oneSenders = await openRoom(reactor, options, [options["one-url"]],
                                         options["names"] + "o", "one process: logging in")
        pair, pairSenders = await openRoom(reactor, options, options["url"],
                                           options["names"] + "p", "two processes: logging in")
        onePids = [options["one-server-pid"]] if options["one-server-pid"] else []
        gc.freeze()
        results["scenarios"]["scaling"] = await scaling.sideBySide(
            reactor, [scaling.Side("one", one, oneSenders, onePids, []),
                      scaling.Side("pair", pair, pairSenders, serverPids, helperPids)],
            options["rounds"], options["fanout-messages"], options["in-flight"])
        results["login"] = {"one": one.login, "pair": pair.login}
        for crowd in (one, pair):
            await crowd.close(reactor, deadline=1.0)
        gc.unfreeze()
    return results


def main(argv: list[str] | None = None) -> None:
    options = LoadOptions()
    if not parseCommandLine(options, argv, "chatthing.bench.load"):
        sys.exit(2)
    raiseFileLimit()

    async def run(reactor) -> None:
        results = await runScenarios(reactor, options)
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()

    task.react(lambda reactor: ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
