"""Is the system clock synchronised? Signed commands carry issued/expiry times checked against it.

Three sources, in order: `timedatectl show -p NTPSynchronized` (systemd), the flag file
systemd-timesyncd writes when it has synchronised, and the kernel's own view (`adjtimex`, which
says "unsynchronised" until some NTP client, chrony or ntpd too, has disciplined the clock).
The answer is True, False or None (nothing could tell).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeagent.doctor_checks import Finding, fail, passed, warn

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised (STA_UNSYNC)
_TIMEX_BYTES = 512  # larger than struct timex on every Linux ABI; modes = 0 at offset 0 only reads
_TIMEDATECTL_S = 2.0


@dataclass(frozen=True, slots=True)
class ClockSync:
    synchronised: bool | None
    source: str  # how it was found out, for the report


def from_timedatectl(run: Callable[[list[str]], str | None] | None = None) -> ClockSync | None:
    """None when timedatectl is missing or cannot answer (no systemd as PID 1, e.g. a container)."""
    output = (run or _run)(["timedatectl", "show", "-p", "NTPSynchronized"])
    if output is None:
        return None
    for line in output.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "NTPSynchronized" and value in ("yes", "no"):
            return ClockSync(value == "yes", f"timedatectl: NTPSynchronized={value}")
    return None


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEDATECTL_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def from_timesync_flag(flag: Path = TIMESYNC_FLAG) -> ClockSync | None:
    """The flag proves synchronisation; its absence proves nothing (chrony or ntpd may be in use)."""
    return ClockSync(True, f"{flag} exists") if flag.exists() else None


def from_adjtimex(adjtimex: Callable[[], int] | None = None) -> ClockSync | None:
    state = (adjtimex or _adjtimex)()
    if state < 0:
        return None
    if state == TIME_ERROR:
        return ClockSync(False, "kernel (adjtimex): clock not synchronised")
    return ClockSync(True, f"kernel (adjtimex): synchronised, state {state}")


def _adjtimex() -> int:
    """adjtimex(2) with modes = 0 (read only, no privilege needed); -1 when unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return -1
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        buf = ctypes.create_string_buffer(_TIMEX_BYTES)
        return int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return -1


def clock_sync() -> ClockSync:
    for probe in (from_timedatectl, from_timesync_flag, from_adjtimex):
        found = probe()
        if found is not None:
            return found
    return ClockSync(None, "no timedatectl, no timesyncd flag, no adjtimex")


def check_clock(probe: Callable[[], ClockSync] = clock_sync) -> list[Finding]:
    what = "clock"
    sync = probe()
    if sync.synchronised is True:
        return [passed(what, f"synchronised ({sync.source})")]
    why = "signed commands are checked against this clock: a wrong time refuses valid ones or accepts expired ones"
    if sync.synchronised is False:
        return [fail(what, f"not synchronised ({sync.source}); {why}",
                     "enable NTP (timedatectl set-ntp true, or chrony) and allow UDP port 123 to a time server, "
                     "or a local one (GPS, the substation's) when there is no internet")]
    return [warn(what, f"cannot tell whether it is synchronised ({sync.source}); {why}",
                 "check with the NTP client in use (chronyc tracking, ntpq -p) that it is")]
