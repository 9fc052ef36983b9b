"""
What the bench reports: every figure of each system, chatthing's as a ratio
to the baseline's, the two processes on Redis against one, warnings where a
figure cannot be trusted, as a table, and as JSON.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tables import aligned, growthTable, ratio, targets

__all__ = ["FIGURES", "Figure", "aligned", "compare", "growthTable", "ratio", "table", "text",
           "writeJSON"]

#: A load generator busy this much of a window was the bottleneck.
LOAD_BOTTLENECK = 0.9

#: Other programs using this much of a CPU during a window make its
#: figures doubtful.
OTHER_LOAD = 0.25


@dataclass(frozen=True)
class Figure:
    """
    One line of the table: where its number is in a system's results, and
    how to show it.
    """

    path: str
    label: str
    scale: float = 1.0
    digits: int = 0

    def value(self, run: dict) -> float | None:
        found: Any = run
        for key in self.path.split("."):
            if not isinstance(found, dict) or found.get(key) is None:
                return None
            found = found[key]
        return found * self.scale if isinstance(found, (int, float)) else None

    def show(self, value: float | None) -> str:
        return "-" if value is None else f"{value:,.{self.digits}f}"


FIGURES = [
    Figure("login.seconds", "login: all room pages answered, s", digits=1),
    Figure("login.settleSeconds", "login: then announcements sent for, s", digits=1),
    Figure("fanout.deliveriesPerSecond", "fanout: deliveries/s"),
    Figure("fanout.serverCpuMicrosPerDelivery", "fanout: server CPU us/delivery", digits=1),
    Figure("fanout.redisCpuMicrosPerDelivery", "fanout: Redis CPU us/delivery", digits=1),
    Figure("fanout.lost", "fanout: deliveries lost"),
    Figure("fanout.loadCpuFraction", "fanout: load generator CPU %", scale=100),
    Figure("latency.latencyMs.p50", "latency: p50 ms", digits=1),
    Figure("latency.latencyMs.p90", "latency: p90 ms", digits=1),
    Figure("latency.latencyMs.p99", "latency: p99 ms", digits=1),
    Figure("latency.latencyMs.max", "latency: max ms", digits=1),
    Figure("latency.serverCpuMicrosPerDelivery", "latency: server CPU us/delivery", digits=1),
    Figure("latency.lost", "latency: deliveries lost"),
    Figure("idle.connections", "idle: connections"),
    Figure("idle.connectSeconds", "idle: time to connect all, s", digits=1),
    Figure("idle.bytesPerConnection", "idle: server memory/connection, KiB", scale=1 / 1024, digits=1),
    Figure("idle.serverCpuMicrosPerConnection", "idle: server CPU us/connection"),
    Figure("idle.framesPerConnection", "idle: frames/page"),
    Figure("joinstorm.connected", "join storm: pages in one room"),
    Figure("joinstorm.allInSeconds", "join storm: all in (answered, saw everyone), s", digits=1),
    Figure("joinstorm.serverCpuMicrosPerConnect", "join storm: server CPU us/connect"),
    Figure("joinstorm.framesPerPage", "join storm: frames/page", digits=1),
    Figure("joinstorm.bytesPerPage", "join storm: KiB received/page", scale=1 / 1024, digits=1),
    Figure("joinstorm.bytesPerConnection", "join storm: server memory/page, KiB", scale=1 / 1024,
           digits=1),
    Figure("joinstorm.pagesLost", "join storm: pages lost"),
    Figure("room20k.pages", "big room: pages in one room"),
    Figure("room20k.storm.allInSeconds", "big room: all in, s", digits=1),
    Figure("room20k.storm.serverCpuMicrosPerConnect", "big room: server CPU us/connect"),
    Figure("room20k.storm.framesPerPage", "big room: frames/page at login", digits=1),
    Figure("room20k.rssBytesPerPage", "big room: server RSS/page, KiB", scale=1 / 1024, digits=1),
    Figure("room20k.chat.latencyMs.p50", "big room: chat p50 ms", digits=1),
    Figure("room20k.chat.latencyMs.p99", "big room: chat p99 ms", digits=1),
    Figure("room20k.chat.serverCpuMicrosPerDelivery", "big room: chat server CPU us/delivery",
           digits=1),
    Figure("room20k.chat.lost", "big room: chat deliveries lost"),
    Figure("room20k.storm.pagesLost", "big room: pages lost"),
]

#: The peers our figures are divided by, each in its column.
PEERS = {"baseline": "x baseline", "node-ws": "x node ws"}


#: Figures compared between two processes on Redis and one.
SCALING = ["fanout.deliveriesPerSecond", "fanout.serverCpuMicrosPerDelivery",
           "latency.latencyMs.p50", "latency.latencyMs.p99", "idle.bytesPerConnection"]

OURS = ("chatthing", "chatthing-redis", "server")


def compare(results: dict) -> dict:
    """
    Add to C{results} the ratios of our figures to the baseline's, the
    two-process figures to the one-process ones, and the warnings.
    """
    runs = results["runs"]
    byPath = {figure.path: figure for figure in FIGURES}
    baseline = runs.get("baseline")
    results["ratiosToBaseline"] = {
        system: {figure.path: ratio(figure.value(run), figure.value(baseline)) for figure in FIGURES}
        for system, run in runs.items() if system in OURS and baseline is not None
    }
    node = runs.get("node-ws")
    results["ratiosToNode"] = {
        system: {figure.path: ratio(figure.value(run), figure.value(node)) for figure in FIGURES}
        for system, run in runs.items() if system in OURS and node is not None
    }
    results["targets"] = targets(runs, FIGURES)
    if "chatthing" in runs and "chatthing-redis" in runs:
        results["twoProcessesToOne"] = {
            path: ratio(byPath[path].value(runs["chatthing-redis"]), byPath[path].value(runs["chatthing"]))
            for path in SCALING
        }
        results["twoCoresToOne"] = twoCoresToOne(runs["chatthing"], runs["chatthing-redis"])
    scaling = results.get("scaling")
    medianIndex = medianRoundIndex(scaling) if scaling else None
    if scaling and medianIndex is not None:
        # Side by side: the fanout of each side in the same round.
        median = scaling["rounds"][medianIndex]
        for path in SCALING:
            if path.startswith("fanout."):
                results["twoProcessesToOne"][path] = ratio(byPath[path].value({"fanout": median["pair"]}),
                                                           byPath[path].value({"fanout": median["one"]}))
        results["twoCoresToOneRounds"] = roundFigures(scaling)
        results["twoCoresToOne"] = twoCoresToOne({"fanout": median["one"]}, {"fanout": median["pair"]})
    results["warnings"] = warnings(runs) + scalingWarnings(scaling or {})
    return results


def twoCoresToOne(one: dict, two: dict) -> float | None:
    """
    How many times one process's fan-out two processes on Redis would
    deliver with a core each, from what a delivery costs in CPU: the bench
    cannot show it directly, since on a 2-core machine the load generator
    needs one core and the servers and Redis share the other.  Redis's CPU
    counts against the two cores too.
    """
    single = (one.get("fanout") or {}).get("serverCpuMicrosPerDelivery")
    pairFanout = two.get("fanout") or {}
    pair = pairFanout.get("serverCpuMicrosPerDelivery")
    if not single or not pair:
        return None
    return 2 * single / (pair + (pairFanout.get("redisCpuMicrosPerDelivery") or 0))


def roundFigures(scaling: dict) -> list[float | None]:
    """
    The two-process figure of each side-by-side round (L{twoCoresToOne}).
    """
    return [twoCoresToOne({"fanout": measured["one"]}, {"fanout": measured["pair"]})
            for measured in scaling.get("rounds", [])]


def medianRoundIndex(scaling: dict) -> int | None:
    """
    The side-by-side round whose two-process figure is the median (the
    lower of the middle two, for an even number); the last round if none
    has one (too short for the CPU clock to move); L{None} if none ran.
    """
    rounds = roundFigures(scaling)
    figures = sorted((figure, index) for index, figure in enumerate(rounds) if figure is not None)
    if not figures:
        return len(rounds) - 1 if rounds else None
    return figures[(len(figures) - 1) // 2][1]


def warnings(runs: dict) -> list[str]:
    """
    What makes a figure doubtful: a busy load generator, losses, refusals,
    pages that could not connect or were cut off, processes that failed.
    """
    found = []
    for system, run in runs.items():
        for error in run.get("errors", []):
            found.append(f"{system}: {error}")
        found += loginWarnings(system, run.get("login") or {})
        for scenario in ("fanout", "latency", "idle", "joinstorm"):
            if run.get(scenario):
                found += windowWarnings(f"{system}, {scenario}", run[scenario])
        for part in ("storm", "chat"):
            if (run.get("room20k") or {}).get(part):
                found += windowWarnings(f"{system}, big room {part}", run["room20k"][part])
        for figures in run.get("growth") or []:
            found += windowWarnings(f"{system}, growth at {figures.get('pages')}", figures)
    return found


def scalingWarnings(scaling: dict) -> list[str]:
    """
    L{warnings} of the side-by-side rounds.
    """
    found = [f"side by side: {error}" for error in scaling.get("errors", [])]
    for side, login in (scaling.get("login") or {}).items():
        found += loginWarnings(f"side by side, {side}", login)
    for index, measured in enumerate(scaling.get("rounds", [])):
        for side, figures in measured.items():
            found += windowWarnings(f"side by side, round {index + 1}, {side}", figures)
    return found


def loginWarnings(where: str, login: dict) -> list[str]:
    """
    What makes the figures after a room's logins doubtful.
    """
    found = []
    if login.get("stillSending"):
        found.append(f"{where}: the server was still sending the logins' announcements "
                     f"{login['settleSeconds']:.0f}s after the last login was answered; "
                     "the scenarios began anyway, and their figures include that work")
    if login.get("failed"):
        found.append(f"{where}: {login['failed']} pages could not log in "
                     f"({'; '.join(login['reasons'])})")
    return found


def windowWarnings(where: str, figures: dict) -> list[str]:
    """
    What makes one scenario's figures doubtful.
    """
    found: list[str] = []
    if "error" in figures:
        return [f"{where}: {figures['error']}"]
    busy = figures.get("loadCpuFraction") or 0
    if busy >= LOAD_BOTTLENECK:
        found.append(f"{where}: the load generator was busy {busy:.0%} of the time: it, not "
                     "the server, was the bottleneck, and the figures measure it")
    other = figures.get("otherCpuFraction") or 0
    if other >= OTHER_LOAD:
        found.append(f"{where}: other programs used {other:.0%} of a CPU meanwhile: "
                     "the figures are doubtful; run the bench on a quiet machine")
    if figures.get("lost"):
        found.append(f"{where}: {figures['lost']:,} deliveries lost")
    if figures.get("extra"):
        found.append(f"{where}: {figures['extra']:,} deliveries more than were sent")
    if figures.get("refused"):
        hint = (" (the server's per-page limit: start it with --rate 100000 --burst 100000)"
                if "RateLimited" in (figures.get("refusedReasons") or {}) else "")
        found.append(f"{where}: {figures['refused']:,} messages refused "
                     f"{figures.get('refusedReasons')}{hint}")
    if figures.get("failed"):
        found.append(f"{where}: {figures['failed']:,} pages could not connect "
                     f"({'; '.join(figures.get('failedReasons', []))})")
    if figures.get("droppedConnections"):
        found.append(f"{where}: the server cut {figures['droppedConnections']:,} connections")
    if figures.get("missedSomeone"):
        found.append(f"{where}: {figures['missedSomeone']:,} pages never saw everyone in their "
                     "presence list")
    if figures.get("stillSending"):
        found.append(f"{where}: the server was still sending {figures['settleSeconds']:.0f}s "
                     "after all were in")
    return found


def table(results: dict) -> str:
    """
    The figures as a text table: a column for each system, and beside each
    of ours its ratio to the baseline (and to one process, for Redis).
    """
    runs = results["runs"]
    ratios = {"baseline": results.get("ratiosToBaseline", {}),
              "node-ws": results.get("ratiosToNode", {})}
    scaling = results.get("twoProcessesToOne", {})
    columns: list[tuple[str, Any]] = []
    for system in runs:
        columns.append((system, lambda figure, s=system: figure.show(figure.value(runs[s]))))
        for peer, title in PEERS.items():
            if system in ratios[peer]:
                columns.append((title, lambda figure, s=system, p=peer:
                                showRatio(ratios[p][s].get(figure.path))))
        if system == "chatthing-redis" and scaling:
            columns.append(("x 1 process", lambda figure: showRatio(scaling.get(figure.path))))
    rows = [[figure.label] + [cell(figure) for _, cell in columns] for figure in FIGURES
            if any(figure.value(run) is not None for run in runs.values())]
    return aligned(["figure"] + [title for title, _ in columns], rows)


def showRatio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def text(results: dict) -> str:
    """
    The whole report: the load, the table, the notes and warnings.
    """
    settings = results["settings"]
    lines = [(
        f"chatthing bench: {settings['receivers']:,} receivers and {settings['senders']} senders "
        f"in one room ({settings['fanoutMessagesPerSender']} messages each for fanout; "
        f"{settings['latencyRate']:g} messages/s for {settings['latencySeconds']:g}s for latency), "
        f"{settings['idle']:,} idle pages "
        + (f"in rooms of {settings['idleRoomSize']}." if settings.get('idleRoomSize')
           else "in one room.")
    )]
    if settings.get("stormPages"):
        lines.append(f"Join storm: {settings['stormPages']:,} pages log in to one room at once; "
                     f"big room: {settings['roomPages']:,} pages, then {settings['roomRate']:g} "
                     f"message/s for {settings['roomSeconds']:g}s; growth: join storms of "
                     f"{', '.join(f'{size:,}' for size in settings['growthSizes'])} pages "
                     "(each when asked for).")
    if settings.get("chatOptions"):
        lines.append(f"chatthing runs with {' '.join(settings['chatOptions'])} (its per-page limits "
                     "raised so that the senders are not refused).")
    bySystem = ", ".join(f"{system} {run['wallSeconds']:.0f}s" for system, run in results["runs"].items()
                         if run.get("wallSeconds") is not None)
    if (results.get("scaling") or {}).get("wallSeconds") is not None:
        bySystem += f", side by side {results['scaling']['wallSeconds']:.0f}s"
    machine = results["machine"]
    lines.append(f"Pinning: {machine['pinning']}.  Wall time: {results['wallSeconds']:.0f}s"
                 + (f" ({bySystem})." if bySystem else "."))
    if machine.get("cpus") is not None:
        lines.append(f"Machine: {machine['cpus']} CPUs, load average {machine['loadAverageBefore']:.2f} "
                     f"before the bench, {machine['loadAverageAfter']:.2f} after.")
    main = table(results)
    if main.count("\n") > 1:  # rows below the header and its rule
        lines += ["", main]
    growth = growthTable(results)
    if growth:
        lines += ["", "Join storms of growing size, each on a fresh server:", growth]
    for target in results.get("targets") or []:
        lines.append(f"target: {target['label']}: {target['ratio']:.2f}x "
                     f"({'met' if target['met'] else 'not met'})")
    if results.get("twoCoresToOne") is not None:
        lines.append(f"Fan-out of two processes on Redis, each on a core of its own (from CPU per delivery, "
                     f"Redis's included): {results['twoCoresToOne']:.2f}x one process's"
                     + sideBySideNote(results) + ".")
    for note in results.get("notes", []):
        lines.append(f"note: {note}")
    for warning in results.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def sideBySideNote(results: dict) -> str:
    """
    How the two-process figure was measured, when side by side.
    """
    rounds = [figure for figure in results.get("twoCoresToOneRounds") or [] if figure is not None]
    if not rounds:
        return ""
    messages = results["settings"].get("scalingMessagesPerSender")
    of = f" of {messages} messages a sender" if messages else ""
    if len(rounds) == 1:
        return f" (one round{of}, side by side with one process)"
    return (f" (the median of {len(rounds)} rounds{of} side by side with one process; "
            f"{min(rounds):.2f}x to {max(rounds):.2f}x)")


def writeJSON(path: str | Path, results: dict) -> None:
    Path(path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
