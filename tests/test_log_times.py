"""
The time of twistd's log lines, formatted once a second (chatthing.logs
L{SecondTimes}, issue 14: the "joined" line of each login): the text is
Twisted's own in every time zone, and the server, once started, works the
local time zone out once a second, not once a line.  Counts, not times.
"""

import io
import os
import random
import time

import twisted.logger._file as fileLog
from twisted.logger import formatEventAsClassicLogText, formatTime, textFileLogObserver, timeFormatRFC3339
from test_startup_gc import startTheServersTopService
from twisted.python._tzhelper import FixedOffsetTimeZone

#: Lines logged within one second in the counted test.
LINES = 1000

#: 2026-03-29 01:00:00 UTC, when Paris moves to summer time.
PARIS_SPRING = 1774746000


def test_secondTimesSayWhatTwistedSays():
    """Whatever the zone, order and fraction of a second, each time reads as Twisted's formatTime writes it."""
    from chatthing.logs import SecondTimes

    rng = random.Random(14)
    times = [rng.uniform(0, 2e9) for _ in range(2000)]
    times += [PARIS_SPRING + d / 4 for d in range(-40, 40)]
    times += [s + f for s in (PARIS_SPRING - 1, PARIS_SPRING, 1.0, 59.0) for f in (0.0, 0.9999994, 0.9999996, 0.99999999)]
    times += [-1.5, -0.25]
    old = os.environ.get("TZ")
    try:
        for zone in ("UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata"):
            os.environ["TZ"] = zone
            time.tzset()
            for order in (sorted(times), times):
                cached = SecondTimes()
                for when in order:
                    assert cached(when) == formatTime(when), (zone, when)
                    assert cached(when, "%H:%M:%S.%f") == formatTime(when, "%H:%M:%S.%f"), (zone, when)
            assert cached(None) == "-" and cached(1.0, None) == "-"
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_theServersLogWorksTheZoneOutOnceASecond(monkeypatch):
    """Once the server has started, twistd's text log formats N lines of one second with 1 zone lookup, not N."""
    lookups = []
    lookup = FixedOffsetTimeZone.fromLocalTimeStamp

    def counted(when):
        lookups.append(when)
        return lookup(when)

    monkeypatch.setattr(FixedOffsetTimeZone, "fromLocalTimeStamp", staticmethod(counted))
    monkeypatch.setattr(fileLog, "formatTime", fileLog.formatTime)  # put back after the test
    startTheServersTopService()
    out = io.StringIO()
    observe = textFileLogObserver(out)
    start = int(time.time())
    events = [{"log_format": "{user} joined {room}", "user": f"user{i}", "room": "lobby",
               "log_time": start + i / LINES, "log_system": "-", "log_namespace": "chatthing.chat.rooms"}
              for i in range(LINES)]
    del lookups[:]
    for event in events:
        observe(event)
    assert len(lookups) == 1
    expected = "".join(formatEventAsClassicLogText(e, formatTime=lambda w: formatTime(w, timeFormatRFC3339))
                       for e in events)
    assert out.getvalue() == expected
