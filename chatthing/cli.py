"""
The C{chatthing} command, for operators::

    chatthing alert "Server restarts in 5 minutes" --token-file admin.token
    chatthing bench --json bench.json --plot bench.png
"""

import getopt
import json
import sys
import urllib.error
import urllib.request

from twisted.python import usage

from . import __version__
from .admin import readToken
from .commandline import parseCommandLine


class AlertOptions(usage.Options):
    synopsis = "TEXT --token-file PATH [--url URL]"
    longdesc = "Send TEXT as a global alert to every page of a running server."
    optParameters = [
        ["url", "u", "http://127.0.0.1:8081/", "Base URL of the server's admin endpoint (--admin-listen)."],
        ["token-file", "t", None, "File holding the admin token (the server's --admin-token-file)."],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Accept options after the text too (C{alert "TEXT" --token-file PATH}):
        C{usage.Options} uses C{getopt}, which stops at the first argument
        that is not an option, so put the options first, then C{--}, then
        the text.
        """
        if options is None:
            options = sys.argv[1:]
        try:
            found, text = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        reordered: list[str] = []
        for name, value in found:
            takesValue = (
                name[2:] + "=" in self.longOpt
                if name.startswith("--")
                else name[1:] + ":" in self.shortOpt
            )
            reordered += [name, value] if takesValue else [name]
        super().parseOptions([*reordered, "--", *text])

    def parseArgs(self, *text: str) -> None:
        self["text"] = " ".join(text)

    def postOptions(self) -> None:
        if not self["text"].strip():
            raise usage.UsageError("give the alert's text")
        if self["token-file"] is None:
            raise usage.UsageError("--token-file is required")
        self["token"] = readToken(self["token-file"])


class BenchOptions(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Measure a chat server on this machine: start chatthing on a loopback port (and two "
        "processes sharing a Redis of their own, a minimal Autobahn broadcast server as "
        "the baseline, and the same on Node's ws where node and npm exist), connect pages from "
        "a load generator in another process, and report deliveries a second, CPU per "
        "delivery, latency, memory per connection, join storms (CPU per connect, frames per "
        "page) and losses, ours as ratios to the baseline's and Node ws's. --url measures a "
        "server already running instead."
    )
    optFlags = [
        ["no-redis", None, "Skip the two processes sharing a Redis."],
        ["no-baseline", None, "Skip the baseline server (and the ratios to it)."],
        ["no-node", None, "Skip the Node ws peer (and the ratios to it)."],
    ]
    optParameters = [
        ["receivers", None, 1000, "Pages that listen in the fanout and latency room.", int],
        ["senders", None, 10, "Pages that say the messages.", int],
        ["fanout-messages", None, 200, "Messages each sender says in the fanout scenario.", int],
        ["scaling-rounds", None, 3,
         "Rounds of fanout on one process and on two sharing a Redis, in turn, for the "
         "two-process figure (0: measure the two in their own run instead).", int],
        ["scaling-messages", None, 100, "Messages each sender says in each of those rounds.", int],
        ["latency-rate", None, 50.0, "Messages a second, all senders together, for latency.", float],
        ["latency-seconds", None, 20.0, "How long the latency scenario sends.", float],
        ["probes", None, 50, "Receivers that time every message they get.", int],
        ["idle", None, 10000, "Idle logged-in pages for the memory scenario.", int],
        ["idle-room-size", None, 0,
         "Idle pages to a room (its presence list goes to all its pages at each login); "
         "0: all in one room.", int],
        ["scenarios", None, "fanout,latency,idle,joinstorm",
         "Which scenarios, comma-separated, of fanout, latency, idle, joinstorm, room20k, growth."],
        ["url", None, None,
         "ws://HOST:PORT/live of a running server to measure instead (no Redis pair, no baseline)."],
        ["server-pid", None, None, "With --url: the server's process id, for its CPU and memory.", int],
        ["json", None, None, "Write every figure to this JSON file."],
        ["plot", None, None,
         "Draw latency and throughput to this PNG (needs: pip install 'chatthing[bench]')."],
        ["storm-pages", None, 2000, "joinstorm: pages logging in to one room at once.", int],
        ["room-pages", None, 20000, "room20k: logged-in pages in one room.", int],
        ["room-rate", None, 1.0, "room20k: messages a second once all are in.", float],
        ["room-seconds", None, 20.0, "room20k: how long they are sent.", float],
        ["growth-sizes", None, "1000,5000,20000",
         "growth: the join storm's sizes, comma-separated, each on a fresh server."],
    ]

    def postOptions(self) -> None:
        from .bench.scenarios import ALL_SCENARIOS

        scenarios = [name.strip() for name in self["scenarios"].split(",") if name.strip()]
        unknown = [name for name in scenarios if name not in ALL_SCENARIOS]
        if unknown or not scenarios:
            raise usage.UsageError(f"--scenarios must be some of {','.join(ALL_SCENARIOS)}, "
                                   f"not {self['scenarios']!r}")
        self["scenarios"] = tuple(name for name in ALL_SCENARIOS if name in scenarios)
        for name in ("receivers", "fanout-messages", "idle", "probes", "scaling-rounds",
                     "scaling-messages"):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must be 0 or more")
        if self["idle-room-size"] < 0:
            raise usage.UsageError("--idle-room-size must be 0 or more")
        try:
            self["growth-sizes"] = tuple(int(size) for size in str(self["growth-sizes"]).split(","))
        except ValueError:
            raise usage.UsageError(f"--growth-sizes must be numbers, comma-separated, "
                                   f"not {self['growth-sizes']!r}") from None
        for name in ("storm-pages", "room-pages"):
            if self[name] < 2:
                raise usage.UsageError(f"--{name} must be 2 or more")
        if min(self["growth-sizes"]) < 2:
            raise usage.UsageError("--growth-sizes must each be 2 or more")
        for name in ("room-rate", "room-seconds"):
            if not self[name] > 0:
                raise usage.UsageError(f"--{name} must be more than 0")
        for name in ("senders",):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be 1 or more")
        for name in ("latency-rate", "latency-seconds"):
            if not self[name] > 0:
                raise usage.UsageError(f"--{name} must be more than 0")
        if self["url"] is not None and not self["url"].startswith("ws://"):
            raise usage.UsageError(f"--url must be ws://HOST:PORT/live, not {self['url']!r}")
        if self["server-pid"] is not None and self["url"] is None:
            raise usage.UsageError("--server-pid goes with --url")

    def settings(self):
        """
        The L{BenchSettings} these options ask for.
        """
        from .bench.scenarios import BenchSettings

        return BenchSettings(
            receivers=self["receivers"], senders=self["senders"], probes=self["probes"],
            fanoutMessages=self["fanout-messages"], latencyRate=self["latency-rate"],
            latencySeconds=self["latency-seconds"], idle=self["idle"],
            idleRoomSize=self["idle-room-size"], scenarios=self["scenarios"],
            redis=not self["no-redis"], baseline=not self["no-baseline"], url=self["url"],
            scalingRounds=self["scaling-rounds"], scalingMessages=self["scaling-messages"],
            serverPids=[self["server-pid"]] if self["server-pid"] is not None else [],
            node=not self["no-node"], stormPages=self["storm-pages"], roomPages=self["room-pages"],
            roomRate=self["room-rate"], roomSeconds=self["room-seconds"],
            growthSizes=self["growth-sizes"],
        )


class Options(usage.Options):
    synopsis = "Usage: chatthing [options]"
    subCommands = [
        ["alert", None, AlertOptions, "Send a global alert to every page."],
        ["bench", None, BenchOptions, "Measure a chat server's throughput, latency and memory."],
    ]

    def opt_version(self) -> None:
        """
        Print chatthing's version and exit.
        """
        print(f"chatthing {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command")


def sendAlert(url: str, token: str, text: str) -> dict:
    """
    POST C{text} to the admin endpoint at C{url}; its JSON answer.
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/alert",
        data=json.dumps({"text": text}).encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    options = Options()
    if not parseCommandLine(options, argv, "chatthing"):
        return 2
    if options.subCommand == "bench":
        return bench(options.subOptions)
    return alert(options.subOptions)


def bench(options: BenchOptions) -> int:
    """
    Run the bench, print its report, and write the JSON and the plot asked
    for.
    """
    from .bench import plot, report
    from .bench.scenarios import runBench

    missing = plot.matplotlibMissing() if options["plot"] is not None else None
    if missing:
        print(f"chatthing: {missing}; the bench runs without the plot", file=sys.stderr)
    results = report.compare(runBench(options.settings()))
    if missing:
        results["notes"].append(missing)
    print(report.text(results))
    if options["json"] is not None:
        report.writeJSON(options["json"], results)
        print(f"figures written to {options['json']}")
    if options["plot"] is not None and not missing:
        plot.draw(options["plot"], results)
        print(f"plot drawn in {options['plot']}")
    return 0


def alert(options: AlertOptions) -> int:
    """
    Send the alert; say how many pages it reached, or why it was not sent.
    """
    try:
        answer = sendAlert(options["url"], options["token"], options["text"])
    except urllib.error.HTTPError as e:
        print(f"chatthing: alert refused ({e.code}): {e.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"chatthing: cannot reach {options['url']}: {e}", file=sys.stderr)
        return 1
    print(f"alert sent to {answer['delivered']} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
