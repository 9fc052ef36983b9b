"""
Log lines a client cannot flood or forge: L{cut} and L{LogThrottle}.
"""

from twisted.logger import Logger, formatEvent

from chatthing.live._logsafe import LOG_TEXT_LIMIT, LogThrottle, cut


def test_cutEscapesAndShortens():
    """Client text in a log line is at most the limit, escaped, and says how much was left out."""
    text = "line\nALERT\x1b[31m\u202e" + "x" * 70000
    shown = cut(text)
    assert len(shown) < LOG_TEXT_LIMIT + 60
    assert "\n" not in shown and "\x1b" not in shown and "\u202e" not in shown
    assert "\\n" in shown and "\\u202e" in shown
    assert shown.endswith(f"(+{len(text) - LOG_TEXT_LIMIT} characters)")
    assert cut("bob") == "'bob'"


def test_throttleLimitsLinesAndCountsTheRest():
    """A flood of one kind of warning is a few lines, and the next line says how many were left out."""
    now = [0.0]
    events: list[dict] = []
    log = Logger(observer=events.append)
    throttle = LogThrottle(lambda: now[0], perInterval=3, interval=10.0)
    logged = [throttle.warn(log, "flood", "refused {n}", n=i) for i in range(100)]
    assert logged.count(True) == 3 and len(events) == 3
    assert throttle.warn(log, "other", "another kind") is True
    now[0] = 11.0
    assert throttle.warn(log, "flood", "refused {n}", n=100) is True
    assert formatEvent(events[-1]) == "refused 100 (97 more like this were not logged)"
