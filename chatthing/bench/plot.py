"""
The bench's figures as a PNG, with matplotlib if it is installed (it is an
extra: C{pip install 'chatthing[bench]'}), so chatthing itself does not
depend on it.

Left: the latency distribution of each system (the share of messages that
arrived within a time).  Middle: each scenario's throughput, ours against
the peers.  Right, when the growth series ran: the server CPU and the
frames a join storm of each size cost, as a multiple of the smallest
storm's, against the size: a cost that grows as the number of pages lies
on the diagonal, one that grows as its square climbs at twice its slope.
"""

from pathlib import Path

INSTALL_HINT = "pip install 'chatthing[bench]'"

#: Each scenario's throughput: where it is, and what it is called.
THROUGHPUT = [
    ("fanout", "deliveriesPerSecond", "fanout\ndeliveries/s"),
    ("latency", "deliveriesPerSecond", "latency\ndeliveries/s"),
    ("idle", "connectionsPerSecond", "idle\nconnections/s"),
    ("joinstorm", "connected", "join storm\npages in/s"),
]


def matplotlibMissing() -> str | None:
    """
    Why the plot cannot be drawn (and how to fix it), or L{None}.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"--plot needs matplotlib: {INSTALL_HINT}"
    return None


def draw(path: str | Path, results: dict) -> None:
    """
    Write the plot of C{results} to C{path} (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    runs = results["runs"]
    growing = {system: run["growth"] for system, run in runs.items() if len(run.get("growth") or []) > 1}
    figure, axes = plt.subplots(1, 3 if growing else 2, figsize=(18 if growing else 12, 5))
    latencyAxes, throughputAxes = axes[0], axes[1]

    for system, run in runs.items():
        quantiles = (run.get("latency") or {}).get("latencyMs", {}).get("quantiles") or []
        if quantiles:
            shares = [i / (len(quantiles) - 1) for i in range(len(quantiles))]
            latencyAxes.plot(quantiles, shares, label=system)
    latencyAxes.set_xscale("log")
    latencyAxes.set_xlabel("send to receive, ms (log scale)")
    latencyAxes.set_ylabel("share of messages received")
    latencyAxes.set_title("latency distribution")
    latencyAxes.grid(True, which="both", alpha=0.3)
    if latencyAxes.lines:
        latencyAxes.legend()

    systems = list(runs)
    width = 0.8 / max(1, len(systems))
    for offset, system in enumerate(systems):
        values = [throughput(runs[system], scenario, key) for scenario, key, _ in THROUGHPUT]
        positions = [i + (offset - (len(systems) - 1) / 2) * width for i in range(len(THROUGHPUT))]
        throughputAxes.bar(positions, values, width, label=system)
    throughputAxes.set_xticks(range(len(THROUGHPUT)), [label for _, _, label in THROUGHPUT])
    throughputAxes.set_yscale("log")
    throughputAxes.set_ylabel("per second (log scale)")
    throughputAxes.set_title("throughput by scenario")
    throughputAxes.legend()

    if growing:
        drawGrowth(axes[2], growing)
    settings = results["settings"]
    figure.suptitle(f"chatthing bench: {settings['receivers']:,} receivers, {settings['senders']} senders, "
                    f"{settings['idle']:,} idle pages")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def throughput(run: dict, scenario: str, key: str) -> float:
    """
    A scenario's rate: its figure, or for the join storm, pages in a
    second until all were in.
    """
    figures = run.get(scenario) or {}
    if scenario == "joinstorm":
        seconds = figures.get("allInSeconds")
        return (figures.get(key) or 0) / seconds if seconds else 0
    return figures.get(key) or 0


def drawGrowth(axes, growing: dict[str, list[dict]]) -> None:
    """
    The growth series: each system's server CPU and frames (a multiple of
    its smallest storm's) against the pages (a multiple of the smallest
    storm's), with the line a cost proportional to the pages would follow.
    """
    largest = 1.0
    for system, series in growing.items():
        first = series[0]
        sizes = [figures["connected"] / first["connected"] for figures in series]
        largest = max(largest, *sizes)
        for key, style in (("serverCpuSeconds", "-o"), ("frames", "--s")):
            if all(figures.get(key) for figures in series):
                axes.plot(sizes, [figures[key] / first[key] for figures in series], style,
                          label=f"{system}: {'server CPU' if key == 'serverCpuSeconds' else 'frames'}")
    axes.plot([1, largest], [1, largest], ":", color="grey", label="grows as the pages (a line)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("pages, x the smallest storm's (log)")
    axes.set_ylabel("cost, x the smallest storm's (log)")
    axes.set_title("join storm: how the cost grows")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
