"""
What a process has used, read from Linux's C{/proc}: the server's CPU time
over a window (its own accounting, so whatever else runs on the machine is
not counted) and its resident memory.
"""

import os

#: Clock ticks a second, the unit of C{/proc/PID/stat}'s CPU times.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpuSeconds(pid: int) -> float:
    """
    CPU time (user and system) process C{pid} has used since it started.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name, in parentheses, may hold spaces: count the fields
    # after its closing one.  utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def residentBytes(pid: int) -> int:
    """
    Process C{pid}'s resident set size (C{VmRSS}).
    """
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def machineBusySeconds() -> float:
    """
    CPU time every CPU of the machine has spent on anything but idling and
    waiting, together, since it booted (the first line of C{/proc/stat}):
    what is left after our own processes' is what something else used.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def available() -> bool:
    """
    Whether this system has C{/proc} to read from.
    """
    return os.path.exists(f"/proc/{os.getpid()}/stat")


def totalCpuSeconds(pids: list[int]) -> float:
    return sum(cpuSeconds(pid) for pid in pids)


def totalResidentBytes(pids: list[int]) -> int:
    return sum(residentBytes(pid) for pid in pids)


#: Open files the bench's processes ask for, if they may: the 50,000-page
#: room and its load generator, with room to spare.
WANTED_FILES = 65536


def raiseFileLimit() -> None:
    """
    Allow this process as many open files as the system lets it have: ten
    thousand connections need more than the usual soft limit of 1,024.
    (Also run in each server's process before it starts.)
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WANTED_FILES:
        # Only a privileged process may raise its hard limit: the 20k
        # room needs 20,000 sockets and a few files more in one process.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_FILES, WANTED_FILES))
            return
        except (ValueError, OSError):
            pass
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


#: Open files a server or the load generator needs besides its pages'
#: sockets (its listening socket, epoll, logs, Python's own).
SPARE_FILES = 100


def mostPages() -> int | None:
    """
    The most pages one process may hold open here once its file limit is
    raised (L{raiseFileLimit}, as the bench's processes do): both the
    server and the load generator hold a socket for each; L{None} if the
    limit cannot be read.
    """
    import resource

    raiseFileLimit()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if hard == resource.RLIM_INFINITY else max(2, hard - SPARE_FILES)
