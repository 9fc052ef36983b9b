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
    latencies = {system: quantiles for system, run in runs.items()
                 if (quantiles := ((run.get("latency") or {}).get("latencyMs") or {}).get("quantiles"))}
    rates = {system: [throughput(run, scenario, key) for scenario, key, _ in THROUGHPUT]
             for system, run in runs.items()}
    panels = ([lambda axes: drawLatency(axes, latencies)] if latencies else []) \
        + ([lambda axes: drawThroughput(axes, rates)] if any(map(any, rates.values())) else []) \
        + ([lambda axes: drawGrowth(axes, growing)] if growing else [])
    if not panels:
        panels = [lambda axes: drawThroughput(axes, rates)]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for drawPanel, panelAxes in zip(panels, axes[0]):
        drawPanel(panelAxes)

    settings = results["settings"]
    figure.suptitle(f"chatthing bench ({', '.join(settings.get('scenarios') or [])})\n"
                    f"{settings['receivers']:,} receivers, {settings['senders']} senders, "
                    f"{settings['idle']:,} idle pages", fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def drawLatency(axes, latencies: dict[str, list[float]]) -> None:
    """
    Each system's latency distribution: the share of messages that
    arrived within a time.
    """
    for system, quantiles in latencies.items():
        shares = [i / (len(quantiles) - 1) for i in range(len(quantiles))]
        axes.plot(quantiles, shares, label=system)
    axes.set_xscale("log")
    axes.set_xlabel("send to receive, ms (log scale)")
    axes.set_ylabel("share of messages received")
    axes.set_title("latency distribution")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()


def drawThroughput(axes, rates: dict[str, list[float]]) -> None:
    """
    Each scenario's rate, a bar for each system.
    """
    width = 0.8 / max(1, len(rates))
    for offset, (system, values) in enumerate(rates.items()):
        positions = [i + (offset - (len(rates) - 1) / 2) * width for i in range(len(THROUGHPUT))]
        axes.bar(positions, values, width, label=system)
    axes.set_xticks(range(len(THROUGHPUT)), [label for _, _, label in THROUGHPUT])
    if any(map(any, rates.values())):
        axes.set_yscale("log")
    axes.set_ylabel("per second (log scale)")
    axes.set_title("throughput by scenario")
    axes.legend()


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
    from matplotlib.ticker import ScalarFormatter

    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    axes.set_xlabel("pages, x the smallest storm's (log)")
    axes.set_ylabel("cost, x the smallest storm's (log)")
    axes.set_title("join storm: how the cost grows")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
