"""Power-quality events from the Urms(1/2) stream: sags (IEC: dips), swells and interruptions, and DC-bus sags.

The AC detector follows IEC 61000-4-30 (5.4): a sag starts when Urms(1/2) falls below the sag
threshold and ends when it is back at the threshold plus the hysteresis; a swell mirrors it above
the swell threshold; a sag in which Urms(1/2) falls below the interruption threshold (or whose
residual does) is reported as one interruption.  Thresholds are fractions of a reference: the
nominal voltage, or the IEC sliding reference (a first-order filter with a 1-minute time constant
over the Urms(1/2) values, frozen while an event is active).  Each event gets its IEEE 1159
category from its kind and duration.

Why the edges are refined: a one-cycle window stamps an event's start only to within about a cycle
(the IEC stamps are the start and end of the windows that crossed the thresholds).  The detector
also keeps the mean square of every half cycle; a half cycle cut by an edge holds the pre-event and
event levels in proportion to the time on each side, so the edge is placed where that proportion
says, to a small fraction of a cycle.  The residual is the RMS of the most extreme half cycle inside
the event: a one-cycle event always contains a whole half cycle, where no one-cycle window may lie
entirely inside it (so the IEC minimum of Urms(1/2) would understate its depth).

A phase jump at an edge distorts the half cycle it falls in: its mean square is then no longer a
mix of the two levels.  From about 3 cycles on, whole half cycles on the event level lie next to both
edges and the edges stay within a third of a cycle; a shorter event with a large jump can come out a
few percent off in residual and up to half a cycle off in duration.

What a one-cycle window cannot see: an event shorter than 1.5 cycles may lie across two windows
and never fill one, so a shallow one (say 0.85 pu for one cycle) can stay above the threshold in
every Urms(1/2) value and go unreported, as with any IEC 61000-4-30 instrument.  From 1.5 cycles on,
one window always lies wholly inside the event.

Events are returned when they have ended (one cycle after the value that ended them, the time the
post-event level needs); the event in progress is visible as :attr:`PqDetector.ongoing`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeagent.analytics.pq_rms import UrmsBlock, UrmsHalfCycle, check_nominal_hz

FloatArray = npt.NDArray[np.float64]


class PqKind(enum.Enum):
    SAG = "sag"  # IEC 61000-4-30: dip
    SWELL = "swell"
    INTERRUPTION = "interruption"
    DC_SAG = "dc_sag"


class Ieee1159Category(enum.Enum):
    """IEEE 1159 duration class: instantaneous 0.5-30 cycles, momentary 30 cycles-3 s, temporary 3 s-1 min,
    sustained beyond 1 min (IEEE 1159 calls a sustained sag undervoltage and a sustained swell overvoltage).
    An interruption has no instantaneous class: it is momentary from 0.5 cycles."""

    INSTANTANEOUS = "instantaneous"
    MOMENTARY = "momentary"
    TEMPORARY = "temporary"
    SUSTAINED = "sustained"


class EventFlag(enum.Enum):
    HIGH_ENTROPY = "HIGH_ENTROPY"  # out of the ordinary: worth an operator's and a model's attention


class Reference(enum.Enum):
    NOMINAL = "nominal"
    SLIDING = "sliding"


INSTANTANEOUS_MAX_CYCLES = 30.0
MOMENTARY_MAX_S = 3.0
TEMPORARY_MAX_S = 60.0


def ieee1159_category(kind: PqKind, duration_s: float, nominal_hz: float) -> Ieee1159Category:
    if duration_s > TEMPORARY_MAX_S:
        return Ieee1159Category.SUSTAINED
    if duration_s >= MOMENTARY_MAX_S:
        return Ieee1159Category.TEMPORARY
    if kind is PqKind.INTERRUPTION or duration_s * nominal_hz >= INSTANTANEOUS_MAX_CYCLES:
        return Ieee1159Category.MOMENTARY
    return Ieee1159Category.INSTANTANEOUS


@dataclass(frozen=True)
class PqEvent:
    """One event.  ``residual_pu``: the lowest RMS for a sag or interruption, the highest for a swell,
    relative to ``reference_v`` (the reference in force when the event began).  ``category`` is None
    for DC-bus events, which IEEE 1159 does not classify."""

    kind: PqKind
    start_s: float
    duration_s: float
    residual_pu: float
    category: Ieee1159Category | None
    reference_v: float
    flags: frozenset[EventFlag] = frozenset()

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def _check_positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PqSettings:
    """Thresholds in pu of the reference; ``hysteresis_pu`` is added to the sag and interruption thresholds
    (and taken from the swell threshold) to end an event."""

    reference: Reference = Reference.NOMINAL
    sag_pu: float = 0.9
    swell_pu: float = 1.1
    interruption_pu: float = 0.1
    hysteresis_pu: float = 0.02
    sliding_tau_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.reference, Reference):
            raise ValueError(f"reference must be Reference.NOMINAL or Reference.SLIDING, got {self.reference!r}")
        for name in ("sag_pu", "swell_pu", "interruption_pu", "sliding_tau_s"):
            _check_positive(name, getattr(self, name))
        if not self.interruption_pu < self.sag_pu:
            raise ValueError(f"interruption_pu ({self.interruption_pu}) must be below sag_pu ({self.sag_pu})")
        if not self.sag_pu < 1.0:
            raise ValueError(f"sag_pu must be below 1.0, got {self.sag_pu}")
        if not self.swell_pu > 1.0:
            raise ValueError(f"swell_pu must be above 1.0, got {self.swell_pu}")
        room = min(1.0 - self.sag_pu, self.swell_pu - 1.0, self.sag_pu - self.interruption_pu)
        if not (math.isfinite(self.hysteresis_pu) and 0.0 <= self.hysteresis_pu < room):
            raise ValueError(f"hysteresis_pu must be >= 0 and below {room:g} (the gap between thresholds and "
                             f"1.0), got {self.hysteresis_pu}")


def _sliding(start_v: float, decay: float, values: FloatArray) -> FloatArray:
    """First-order filter ``r <- decay * r + (1 - decay) * v`` over ``values``, vectorised.

    Returns ``r`` before each value and, last, after all of them (``len(values) + 1`` entries).  It runs
    in blocks short enough that ``decay ** -k`` stays well inside float range.
    """
    out = np.empty(values.shape[0] + 1)
    out[0] = start_v
    for first in range(0, values.shape[0], 2048):
        block = values[first:first + 2048]
        k = np.arange(1, block.shape[0] + 1, dtype=np.float64)
        acc = np.cumsum(block * decay ** -k)
        out[first + 1:first + 1 + block.shape[0]] = decay ** k * (out[first] + (1.0 - decay) * acc)
    return out


def _fraction(ms: float, base_ms: float, event_ms: float) -> float:
    """How much of a half cycle the event covers, from its mean square between the base and event levels."""
    span = base_ms - event_ms
    if span == 0.0:
        return 0.0
    return min(1.0, max(0.0, (base_ms - ms) / span))


class _Active:
    """Book-keeping of the event in progress (mutable, private to the detector)."""

    HEAD = 8  # half cycles kept from the start (the onset and, for short events, all of it)

    def __init__(self, kind: PqKind, trigger_t: float, ref_v: float, pre_ms: float, lead: list[float]) -> None:
        self.kind = kind
        self.trigger_t = trigger_t  # end of the window that crossed the threshold (e_m)
        self.ref_v = ref_v
        self.pre_ms = pre_ms
        self.head = lead  # half-cycle mean squares from the one ending at e_m - T on
        self.tail: deque[float] = deque(lead[-4:], maxlen=4)
        self.count = len(lead)
        self.extreme_ms = self.pick(lead)  # over every half cycle: the live view's residual
        self.inner_ms: float | None = None  # over the half cycles surely inside (index 3 to count - 4)
        self.interrupted = False
        self.last_t = trigger_t
        self.end_t: float | None = None  # end of the window that ended the event (e_n)
        self.post: list[float] = []

    def pick(self, values: list[float]) -> float:
        """The most extreme mean square: the lowest for a sag, the highest for a swell."""
        return min(values) if self.kind is PqKind.SAG else max(values)

    def add(self, t_s: float, half_ms: float) -> None:
        if len(self.head) < self.HEAD:
            self.head.append(half_ms)
        self.tail.append(half_ms)
        self.count += 1
        self.last_t = t_s
        self.extreme_ms = self.pick([self.extreme_ms, half_ms])
        if self.count >= 7:  # tail[0] (index count - 4) now lies between the two edges' candidates
            self.inner_ms = self.pick([self.tail[0]] if self.inner_ms is None else [self.inner_ms, self.tail[0]])


class PqDetector:
    """Sag/swell/interruption detector over Urms(1/2) values (see the module docstring)."""

    def __init__(self, nominal_v: float, nominal_hz: float = 50.0, settings: PqSettings = PqSettings(), *,
                 initial_reference_v: float | None = None) -> None:
        self.nominal_v = _check_positive("nominal_v", nominal_v)
        self.nominal_hz = check_nominal_hz(nominal_hz)
        if not isinstance(settings, PqSettings):
            raise ValueError(f"settings must be a PqSettings, got {type(settings).__name__}")
        self.settings = settings
        start = self.nominal_v if initial_reference_v is None else _check_positive("initial_reference_v",
                                                                                   initial_reference_v)
        self._ref_v = start
        self._period_s = 1.0 / self.nominal_hz
        self._decay = math.exp(-0.5 * self._period_s / settings.sliding_tau_s)
        self._hist: deque[float] = deque(maxlen=6)  # latest half-cycle mean squares
        self._active: _Active | None = None

    @property
    def reference_v(self) -> float:
        """The reference now (frozen while an event is active)."""
        return self._ref_v

    @property
    def ongoing(self) -> PqEvent | None:
        """The event in progress, provisionally: IEC start stamp, duration so far, residual so far."""
        ev = self._active
        if ev is None:
            return None
        start = ev.trigger_t - self._period_s
        duration = (ev.last_t if ev.end_t is None else ev.end_t) - start
        return self._event(ev, start, duration)

    def feed(self, block: UrmsBlock) -> list[PqEvent]:
        """Take the next Urms(1/2) values; return the events that ended (in order)."""
        t, u, h = block.t_s, block.urms, block.half_ms
        if not (t.shape == u.shape == h.shape and np.isfinite(u).all() and np.isfinite(h).all()):
            raise ValueError("UrmsBlock must hold equally long arrays of finite values")
        events: list[PqEvent] = []
        i = 0
        while i < t.shape[0]:
            if self._active is None:
                i = self._scan_quiet(t, u, h, i)
                continue
            done = self._step(float(t[i]), float(u[i]), float(h[i]))
            if done is not None:
                events.append(done)
            i += 1
        return events

    # -- quiet stretches: vectorised ---------------------------------------------------------------
    def _scan_quiet(self, t: FloatArray, u: FloatArray, h: FloatArray, first: int) -> int:
        """Absorb values from ``first`` until one starts an event (opened here); return the next index."""
        s = self.settings
        values = u[first:]
        if s.reference is Reference.SLIDING:
            refs = _sliding(self._ref_v, self._decay, values)
            crossed = (values < s.sag_pu * refs[:-1]) | (values > s.swell_pu * refs[:-1])
        else:
            refs = None
            crossed = (values < s.sag_pu * self._ref_v) | (values > s.swell_pu * self._ref_v)
        hit = int(np.argmax(crossed)) if crossed.any() else int(values.shape[0])
        if refs is not None:
            self._ref_v = float(refs[hit])
        self._hist.extend(h[first + max(0, hit - 6):first + hit].tolist())
        if hit == values.shape[0]:
            return int(t.shape[0])
        j = first + hit
        self._open(float(t[j]), float(u[j]), float(h[j]))
        return j + 1

    # -- during an event: one value at a time ------------------------------------------------------
    def _open(self, t_s: float, urms: float, half_ms: float) -> None:
        s, ref = self.settings, self._ref_v
        kind = PqKind.SAG if urms < s.sag_pu * ref else PqKind.SWELL
        hist = list(self._hist)
        pre = hist[-4:-2]
        pre_ms = sum(pre) / len(pre) if pre else ref * ref
        lead = [*([pre_ms] * max(0, 2 - len(hist))), *hist[-2:], half_ms]
        self._active = _Active(kind, t_s, ref, pre_ms, lead)
        self._active.interrupted = urms < s.interruption_pu * ref
        self._hist.append(half_ms)

    def _starts(self, urms: float) -> bool:
        s = self.settings
        return urms < s.sag_pu * self._ref_v or urms > s.swell_pu * self._ref_v

    def _step(self, t_s: float, urms: float, half_ms: float) -> PqEvent | None:
        ev = self._active
        assert ev is not None
        s = self.settings
        if ev.end_t is None:
            ev.add(t_s, half_ms)
            if ev.kind is PqKind.SAG:
                ev.interrupted = ev.interrupted or urms < s.interruption_pu * ev.ref_v
                ended = urms >= (s.sag_pu + s.hysteresis_pu) * ev.ref_v
            else:
                ended = urms <= (s.swell_pu - s.hysteresis_pu) * ev.ref_v
            if ended:
                ev.end_t = t_s
                if self._starts(urms):  # straight from one event into the next (a swell into a sag)
                    done = self._finish(ev)
                    self._open(t_s, urms, half_ms)
                    return done
            self._hist.append(half_ms)  # if it ended, wait one cycle for the post-event level
            return None
        if self._starts(urms):  # a new event before the post-event cycle was complete
            done = self._finish(ev)
            self._open(t_s, urms, half_ms)
            return done
        ev.post.append(half_ms)
        self._hist.append(half_ms)
        if self.settings.reference is Reference.SLIDING:
            self._ref_v = self._decay * self._ref_v + (1.0 - self._decay) * urms
        return self._finish(ev) if len(ev.post) == 2 else None

    def _finish(self, ev: _Active) -> PqEvent:
        """Place the edges and take the residual (see the module docstring), and close the event."""
        self._active = None
        assert ev.end_t is not None
        half = 0.5 * self._period_s
        pre, post = ev.pre_ms, (sum(ev.post) / len(ev.post) if ev.post else ev.pre_ms)
        steps = ev.count - 3  # half cycles from e_m to e_n
        if steps >= 4:  # the half cycles next to each edge lie wholly inside the event
            lead_ms, trail_ms = ev.head[3], ev.tail[0]
            start = ev.trigger_t - half * sum(_fraction(m, pre, lead_ms) for m in ev.head[:3])
            end = ev.end_t - 3.0 * half + half * sum(_fraction(m, post, trail_ms) for m in list(ev.tail)[1:])
        else:  # short: one extreme half cycle stands for the event level on both sides
            seq = ev.head[:ev.count]
            k = seq.index(ev.pick(seq))
            k_end = ev.trigger_t - 2.0 * half + k * half
            start = k_end - half * sum(_fraction(m, pre, seq[k]) for m in seq[:k + 1])
            end = k_end - half + half * sum(_fraction(m, post, seq[k]) for m in seq[k:])
        end = max(start, end)
        return self._event(ev, start, end - start, self._residual_ms(ev, start, end))

    def _residual_ms(self, ev: _Active, start_s: float, end_s: float) -> float:
        """The extreme over the half cycles inside the event, at least a half cycle from either placed edge.

        A half cycle cut by an edge is left out: with a phase jump at the edge its mean square can lie
        beyond the event level, and the edge itself may be placed a fraction of a half cycle off.  An event
        too short to have such half cycles takes the median of those it (nearly) covers.
        """
        half = 0.5 * self._period_s
        known = dict(enumerate(ev.head))
        known.update({ev.count - len(ev.tail) + k: m for k, m in enumerate(ev.tail)})

        def overlap(i: int) -> float:
            return min(end_s, ev.trigger_t + (i - 2) * half) - max(start_s, ev.trigger_t + (i - 3) * half)

        inside = [m for i, m in known.items() if ev.trigger_t + (i - 3) * half >= start_s + half
                  and ev.trigger_t + (i - 2) * half <= end_s - half]
        if ev.inner_ms is not None:
            inside.append(ev.inner_ms)
        if inside:
            return ev.pick(inside)
        covered = [m for i, m in known.items() if overlap(i) >= 0.75 * half]
        return float(np.median(covered)) if covered else known[max(known, key=overlap)]

    def _event(self, ev: _Active, start_s: float, duration_s: float, extreme_ms: float | None = None) -> PqEvent:
        residual = math.sqrt(max(ev.extreme_ms if extreme_ms is None else extreme_ms, 0.0)) / ev.ref_v
        # A sag whose residual is under the interruption threshold is an interruption, even when it was
        # too short for a whole one-cycle window to fall under the threshold.
        interrupted = ev.interrupted or (ev.kind is PqKind.SAG and residual < self.settings.interruption_pu)
        kind = PqKind.INTERRUPTION if interrupted else ev.kind
        return PqEvent(kind, start_s, duration_s, residual, ieee1159_category(kind, duration_s, self.nominal_hz),
                       ev.ref_v)


class PqMonitor:
    """Urms(1/2) and event detection on one channel: ``feed(samples) -> list[PqEvent]``."""

    def __init__(self, rate_hz: float, nominal_hz: float, nominal_v: float, settings: PqSettings = PqSettings(),
                 *, t0_s: float = 0.0) -> None:
        self.rms = UrmsHalfCycle(rate_hz, nominal_hz, t0_s=t0_s)
        self.detector = PqDetector(nominal_v, nominal_hz, settings)

    def feed(self, samples: npt.ArrayLike) -> list[PqEvent]:
        return self.detector.feed(self.rms.feed(samples))


# --------------------------------------------------------------------------------------------- DC bus

@dataclass
class _DcState:
    start_s: float
    ref_v: float
    min_v: float
    last_s: float


class DcSagDetector:
    """Sags on a DC bus (e.g. an INA226's bus voltage): more than ``sag_fraction`` under the reference.

    The reference is ``nominal_v`` or a first-order sliding reference (time constant ``sliding_tau_s``,
    frozen during a sag).  A sag ends when the voltage is back within ``sag_fraction - hysteresis_fraction``
    of the reference; it is then returned from :meth:`update`, flagged ``HIGH_ENTROPY``.
    """

    def __init__(self, nominal_v: float, *, reference: Reference = Reference.NOMINAL, sag_fraction: float = 0.05,
                 hysteresis_fraction: float = 0.02, sliding_tau_s: float = 60.0) -> None:
        self.nominal_v = _check_positive("nominal_v", nominal_v)
        self.sliding_tau_s = _check_positive("sliding_tau_s", sliding_tau_s)
        if not isinstance(reference, Reference):
            raise ValueError(f"reference must be Reference.NOMINAL or Reference.SLIDING, got {reference!r}")
        if not (math.isfinite(sag_fraction) and 0.0 < sag_fraction < 1.0):
            raise ValueError(f"sag_fraction must be between 0 and 1, got {sag_fraction}")
        if not (math.isfinite(hysteresis_fraction) and 0.0 <= hysteresis_fraction < sag_fraction):
            raise ValueError(f"hysteresis_fraction must be >= 0 and below sag_fraction, got {hysteresis_fraction}")
        self.reference = reference
        self.sag_fraction = float(sag_fraction)
        self.hysteresis_fraction = float(hysteresis_fraction)
        self._ref_v = self.nominal_v
        self._last_t: float | None = None
        self._sag: _DcState | None = None

    @property
    def reference_v(self) -> float:
        return self._ref_v

    @property
    def ongoing(self) -> PqEvent | None:
        sag = self._sag
        return None if sag is None else self._event(sag, sag.last_s)

    def update(self, t_s: float, bus_v: float) -> PqEvent | None:
        """One bus-voltage reading at ``t_s`` (s, increasing); the sag that it ended, if any."""
        if not math.isfinite(t_s) or (self._last_t is not None and t_s <= self._last_t):
            raise ValueError(f"t_s must be finite and increasing, got {t_s!r} after {self._last_t!r}")
        if not math.isfinite(bus_v):
            raise ValueError(f"bus_v must be finite, got {bus_v!r} at t_s={t_s}")
        dt = None if self._last_t is None else t_s - self._last_t
        self._last_t = t_s
        sag = self._sag
        if sag is not None:
            sag.last_s = t_s
            sag.min_v = min(sag.min_v, bus_v)
            if bus_v < (1.0 - self.sag_fraction + self.hysteresis_fraction) * sag.ref_v:
                return None
            self._sag = None
            return self._event(sag, t_s)
        if bus_v < (1.0 - self.sag_fraction) * self._ref_v:
            self._sag = _DcState(t_s, self._ref_v, bus_v, t_s)
            return None
        if self.reference is Reference.SLIDING and dt is not None:
            decay = math.exp(-dt / self.sliding_tau_s)
            self._ref_v = decay * self._ref_v + (1.0 - decay) * bus_v
        return None

    @staticmethod
    def _event(sag: _DcState, end_s: float) -> PqEvent:
        return PqEvent(PqKind.DC_SAG, sag.start_s, end_s - sag.start_s, sag.min_v / sag.ref_v, None, sag.ref_v,
                       frozenset({EventFlag.HIGH_ENTROPY}))


def thermal_delta_c(hot_c: float | None, cold_c: float | None) -> float | None:
    """``hot_c - cold_c`` when both temperatures are finite numbers, else None (nothing to report)."""
    if hot_c is None or cold_c is None or not (math.isfinite(hot_c) and math.isfinite(cold_c)):
        return None
    return float(hot_c) - float(cold_c)
