"""
The bench's figures as a PNG, with matplotlib if it is installed (it is an
extra: C{pip install 'chatthing[bench]'}), so chatthing itself does not
depend on it.

Left: the latency distribution of each system (the share of messages that
arrived within a time).  Right: each scenario's throughput, ours against
the baseline.
"""

from pathlib import Path

INSTALL_HINT = "pip install 'chatthing[bench]'"

#: Each scenario's throughput: where it is, and what it is called.
THROUGHPUT = [
    ("fanout", "deliveriesPerSecond", "fanout\ndeliveries/s"),
    ("latency", "deliveriesPerSecond", "latency\ndeliveries/s"),
    ("idle", "connectionsPerSecond", "idle\nconnections/s"),
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
    figure, (latencyAxes, throughputAxes) = plt.subplots(1, 2, figsize=(12, 5))

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
        values = [(runs[system].get(scenario) or {}).get(key) or 0 for scenario, key, _ in THROUGHPUT]
        positions = [i + (offset - (len(systems) - 1) / 2) * width for i in range(len(THROUGHPUT))]
        throughputAxes.bar(positions, values, width, label=system)
    throughputAxes.set_xticks(range(len(THROUGHPUT)), [label for _, _, label in THROUGHPUT])
    throughputAxes.set_yscale("log")
    throughputAxes.set_ylabel("per second (log scale)")
    throughputAxes.set_title("throughput by scenario")
    throughputAxes.legend()

    settings = results["settings"]
    figure.suptitle(f"chatthing bench: {settings['receivers']:,} receivers, {settings['senders']} senders, "
                    f"{settings['idle']:,} idle pages")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
