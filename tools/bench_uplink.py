"""Benchmark: records/s through edgeagent's MQTT uplink vs a bare paho-mqtt QoS 1 loop.

One Mosquitto (`tests.mosquitto.Mosquitto`, on 127.0.0.1 only, a free port, no persistence) is
started by the benchmark and used by every phase. Measured:

* `bare` (the baseline asked for): paho-mqtt's own threaded client (`loop_start()`, MQTT 5,
  `max_inflight_messages_set` equal to the uplink's effective window) publishing N payloads at QoS 1
  to the same topic, with the same bytes on the wire as the uplink sends (the stored payload with
  the publisher's `"id"` spliced in), timed from the first `publish()` to the last PUBACK;
* `uplink`: a real `Uplink` (fresh outbox in a temporary directory) with the broker up: N
  `await uplink.emit(lane, topic, payload)` calls, timed from the first emit until every record is
  acknowledged, i.e. its PUBACK arrived and the outbox deleted it (`counters.delivered`; then
  checked with `refresh_stats()`: `backlog() == 0 and in_flight() == 0`). Once for telemetry
  (buffered, one commit per 200 records) and once for events (each one fsynced before `emit`
  returns), each against a bare round with the same payloads;
* `replay`: the broker is stopped, a fresh uplink is pointed at its (now closed) port, N telemetry
  records are emitted and flushed, then the broker is started again and the backlog is timed until
  empty: from the moment the uplink is connected (its replay rate) and from the broker's start
  (which adds the reconnect backoff the link happened to be in);
* `outbox size` (once): N telemetry records appended by an uplink whose broker port is closed; the
  size of `outbox.sqlite` + `-wal` divided by N, next to the payload bytes per record; and the size
  of the file alone once the uplink closed the outbox (which folds the WAL back into it).

Rounds alternate (bare telemetry, uplink telemetry, bare events, uplink events, replay; again …)
so that slow drifts of a noisy machine hit all kinds alike; the report gives medians over the rounds
and the ratios uplink/bare. Every wait has a timeout, the run stops starting new rounds once
`--max-seconds` would be exceeded, and the broker and temporary directories are removed however
the run ends.

Run from the repo root: `.venv/bin/python tools/bench_uplink.py [--rounds N] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgeagent import config, logs
from edgeagent.image import PointView, ProcessImage, Quality, Sample
from edgeagent.uplink import messages
from edgeagent.uplink.outbox import Lane
from edgeagent.uplink.service import Identity, Uplink
from tests.mosquitto import MOSQUITTO, Mosquitto, free_port

HOST = "127.0.0.1"
SITE = "bench"
NODE = "edge-01"
TOPICS = messages.Topics(SITE, NODE)
CONNECT_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.001  # how often the uplink's counters are looked at while waiting (in-memory, cheap)

SITE_TOML = """
[site]
id = "{site}"
node = "{node}"
[devices.pcc]
kind = "sunspec"
host = "127.0.0.1"
points = ["203.W"]
[uplink]
broker = "mqtt://{host}:{port}"
"""


class BenchError(Exception):
    """A phase could not be measured (timeout, refused publish, uplink task died)."""


# --- payloads -------------------------------------------------------------------------------------

def telemetry_payloads(n: int) -> list[bytes]:
    """`n` telemetry messages as the uplink's telemetry task builds them: two points each (about
    330 bytes), values changing from record to record."""
    out: list[bytes] = []
    t0 = time.time()
    for i in range(n):
        t = t0 + i * 0.1
        power = Sample("pcc.203.W", round(12_000 + (i * 7919) % 5000 + 0.125, 3), "W", Quality.GOOD, 0.0, t)
        soc = Sample("bess.soc_pct", round(20 + (i % 6000) / 100, 2), "%", Quality.GOOD, 0.0, t)
        points = [(s.point, PointView(s, 0.0, Quality.GOOD)) for s in (power, soc)]
        out.append(messages.telemetry(SITE, NODE, "change", points))
    return out


def event_payloads(n: int) -> list[bytes]:
    """`n` event messages (about 240 bytes): an interlock trip with its data."""
    return [messages.event(SITE, NODE, "interlock.tripped", "warning",
                           {"interlock": "overtemp", "point": "bess.cell_temp_max_c",
                            "value": round(45 + (i % 50) / 10, 1), "limit": 45.0, "seq": i})
            for i in range(n)]


def on_the_wire(payloads: Sequence[bytes]) -> list[bytes]:
    """The bytes the uplink publishes for these stored payloads (`"id"` spliced in front), so the
    baseline sends exactly as many bytes per message."""
    first_id = int(time.time() * 1000) << 20
    return [messages.frame(p, first_id + i, False) for i, p in enumerate(payloads)]


# --- results --------------------------------------------------------------------------------------

@dataclass
class Round:
    """One measured round: `records` acknowledged in `seconds`."""

    kind: str  # "bare_telemetry" | "uplink_telemetry" | "bare_event" | "uplink_event"
    records: int
    seconds: float
    emit_seconds: float | None = None  # uplink: when the last emit returned (after the first began)
    delivered: int | None = None  # uplink: acknowledgements counted; more than `records` means re-sends

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


@dataclass
class ReplayRound:
    """One backlog replay: `records` emitted while the broker was down, then drained."""

    records: int
    emit_seconds: float  # emitting + flushing the backlog with the broker down
    broker_start_s: float  # broker.start() until it accepted TCP connections
    reconnect_s: float  # broker accepting → uplink connected (birth acknowledged)
    drain_s: float  # uplink connected → backlog empty
    delivered: int  # acknowledgements the uplink counted (more than `records`: re-sends)

    @property
    def from_connect_per_s(self) -> float:
        return self.records / self.drain_s

    @property
    def from_start_per_s(self) -> float:
        return self.records / (self.broker_start_s + self.reconnect_s + self.drain_s)


@dataclass
class Results:
    """Everything measured, in the order it happened."""

    window: int = 0
    protocol: str | None = None
    rounds: list[Round] = field(default_factory=list)
    replays: list[ReplayRound] = field(default_factory=list)
    outbox: dict[str, Any] = field(default_factory=dict)
    payload_bytes: dict[str, float] = field(default_factory=dict)  # mean stored payload size per lane
    stopped_early: bool = False


# --- the baseline: bare paho ----------------------------------------------------------------------

def bare_round(kind: str, port: int, topic: str, payloads: Sequence[bytes], window: int, timeout_s: float) -> Round:
    """Publish `payloads` at QoS 1 with paho's threaded client and wait for every PUBACK.

    Blocking: run it in a thread. The clock runs from the first `publish()` to the last PUBACK;
    paho queues what exceeds `window` and sends it as PUBACKs free the window.
    """
    n = len(payloads)
    connected = threading.Event()
    done = threading.Event()
    acked = failed = 0
    refused: list[str] = []

    def on_connect(client: paho.Client, userdata: object, flags: paho.ConnectFlags, reason: ReasonCode,
                   props: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    def on_publish(client: paho.Client, userdata: object, mid: int, reason: ReasonCode, props: object) -> None:
        nonlocal acked, failed
        if reason.is_failure:
            failed += 1
        acked += 1
        if acked >= n:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)  # no limit on paho's own queue
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(HOST, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_S) or refused:
            raise BenchError(f"bare paho client: no CONNACK within {CONNECT_TIMEOUT_S:g} s or refused {refused}")
        t0 = time.perf_counter()
        for payload in payloads:
            info = client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise BenchError(f"bare paho publish failed: {paho.error_string(info.rc)}")
        if not done.wait(timeout_s):
            raise BenchError(f"bare paho: only {acked}/{n} PUBACKs within {timeout_s:g} s")
        seconds = time.perf_counter() - t0
        if failed:
            raise BenchError(f"bare paho: the broker refused {failed} publishes")
        return Round(kind, n, seconds)
    finally:
        client.disconnect()
        client.loop_stop()


# --- the uplink -----------------------------------------------------------------------------------

def make_uplink(port: int, state_dir: Path) -> Uplink:
    """An `Uplink` as the daemon builds it from an `[uplink]` section, pointed at `port`."""
    cfg = config.parse(SITE_TOML.format(site=SITE, node=NODE, host=HOST, port=port))
    assert cfg.uplink is not None
    return Uplink(cfg.uplink, Identity(SITE, NODE, "bench", "0" * 64), state_dir, ProcessImage([]))


@contextlib.asynccontextmanager
async def running_uplink(port: int, state_dir: Path) -> AsyncIterator[tuple[Uplink, asyncio.Task[None]]]:
    """`uplink.run()` in a task for the block; afterwards stopped gracefully (cancelled if it hangs)."""
    uplink = make_uplink(port, state_dir)
    task = asyncio.create_task(uplink.run(), name="bench uplink")
    try:
        yield uplink, task
    finally:
        uplink.request_stop()
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it; a failure was reported by the waits


def _alive(task: asyncio.Task[None], what: str) -> None:
    if task.done():
        error = None if task.cancelled() else task.exception()
        raise BenchError(f"the uplink ended while {what}: {error!r}")


async def wait_connected(uplink: Uplink, task: asyncio.Task[None], deadline: float) -> None:
    """Until the link is up and the birth acknowledged (`mqtt.connected`)."""
    while not uplink.mqtt.connected:
        _alive(task, "connecting")
        if time.monotonic() > deadline:
            raise BenchError(f"the uplink did not connect: {uplink.mqtt.link.reason}")
        await asyncio.sleep(POLL_S)


async def emit_all(uplink: Uplink, task: asyncio.Task[None], lane: Lane, topic: str, payloads: Sequence[bytes],
                   deadline: float) -> None:
    """`await uplink.emit(...)` each payload in turn; BenchError if `deadline` (monotonic) passes first."""
    done = 0
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            for payload in payloads:
                await uplink.emit(lane, topic, payload)
                done += 1
            await uplink.outbox.flush()  # telemetry: the last partial batch on disk too
    except TimeoutError:
        _alive(task, "emitting")
        raise BenchError(f"uplink: only {done}/{len(payloads)} {lane.value} records emitted in time") from None


async def wait_acked(uplink: Uplink, task: asyncio.Task[None], lane: Lane, n: int, deadline: float) -> float:
    """Wait until `n` records of `lane` are acknowledged and the outbox is empty; return the
    `perf_counter` time at which that was first seen."""
    while uplink.counters.delivered[lane.value] < n:
        _alive(task, "delivering")
        if time.monotonic() > deadline:
            await uplink.refresh_stats()
            raise BenchError(f"uplink: {uplink.counters.delivered[lane.value]}/{n} {lane.value} records acknowledged "
                             f"in time (backlog {uplink.backlog()}, in flight {uplink.in_flight()})")
        await asyncio.sleep(POLL_S)
    t_acked = time.perf_counter()
    while True:  # the brief's definition of done; normally true at the first look
        await uplink.refresh_stats()
        if uplink.backlog() == 0 and uplink.in_flight() == 0:
            return t_acked
        _alive(task, "draining")
        if time.monotonic() > deadline:
            raise BenchError(f"uplink: backlog {uplink.backlog()}, in flight {uplink.in_flight()} at the deadline")
        await asyncio.sleep(POLL_S)
        t_acked = time.perf_counter()


async def uplink_round(kind: str, port: int, lane: Lane, topic: str, payloads: Sequence[bytes], state_dir: Path,
                       timeout_s: float) -> tuple[Round, int, str | None]:
    """Emit `payloads` into a fresh uplink connected to the broker; time until all are acknowledged.

    Returns the round, the link's publish window and the MQTT version it negotiated.
    """
    async with running_uplink(port, state_dir) as (uplink, task):
        await wait_connected(uplink, task, time.monotonic() + CONNECT_TIMEOUT_S)
        window, protocol = uplink.mqtt.free_window, uplink.mqtt.protocol  # nothing in flight yet: the window
        deadline = time.monotonic() + timeout_s
        t0 = time.perf_counter()
        await emit_all(uplink, task, lane, topic, payloads, deadline)
        t_emitted = time.perf_counter()
        t_done = await wait_acked(uplink, task, lane, len(payloads), deadline)
        delivered = uplink.counters.delivered[lane.value]
    return Round(kind, len(payloads), t_done - t0, t_emitted - t0, delivered), window, protocol


def outbox_bytes(state_dir: Path) -> tuple[int, int]:
    """Sizes of the outbox database file and its WAL (0 if absent)."""
    db = state_dir / "outbox.sqlite"
    wal = state_dir / "outbox.sqlite-wal"
    return (db.stat().st_size if db.exists() else 0), (wal.stat().st_size if wal.exists() else 0)


async def outbox_size(payloads: Sequence[bytes], state_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Append `payloads` as telemetry with no broker reachable; bytes on disk per record."""
    closed_port = free_port()  # nobody listens there: the link keeps failing to connect, as in an outage
    async with running_uplink(closed_port, state_dir) as (uplink, task):
        await emit_all(uplink, task, Lane.TELEMETRY, "telemetry", payloads, time.monotonic() + timeout_s)
        stats = await uplink.refresh_stats()
        _alive(task, "appending")
        if uplink.mqtt.connected:
            raise BenchError(f"the uplink connected to port {closed_port}, which should be closed")
        db, wal = outbox_bytes(state_dir)
    closed_db, closed_wal = outbox_bytes(state_dir)  # close() ran wal_checkpoint(TRUNCATE)
    n = len(payloads)
    payload_bytes = sum(len(p) for p in payloads)
    return {
        "records": n,
        "backlog": sum(stats.records.values()),
        "thinned": stats.thinned,
        "dropped": stats.dropped,
        "db_bytes": db,
        "wal_bytes": wal,
        "bytes_per_record": round((db + wal) / n, 1),
        "closed_db_bytes": closed_db + closed_wal,
        "closed_bytes_per_record": round((closed_db + closed_wal) / n, 1),
        "payload_bytes_per_record": round(payload_bytes / n, 1),
        "ratio_disk_to_payload": round((db + wal) / payload_bytes, 3),
        "ratio_closed_disk_to_payload": round((closed_db + closed_wal) / payload_bytes, 3),
    }


async def replay_round(broker: Mosquitto, payloads: Sequence[bytes], state_dir: Path, timeout_s: float) -> ReplayRound:
    """Broker down: emit `payloads` as telemetry; broker up: time the backlog until it is empty.

    Leaves the broker running.
    """
    await asyncio.to_thread(broker.stop)
    try:
        async with running_uplink(broker.port, state_dir) as (uplink, task):
            deadline = time.monotonic() + timeout_s
            t0 = time.perf_counter()
            await emit_all(uplink, task, Lane.TELEMETRY, "telemetry", payloads, deadline)
            stats = await uplink.refresh_stats()
            t_emitted = time.perf_counter()
            if uplink.mqtt.connected or uplink.counters.delivered[Lane.TELEMETRY.value]:
                raise BenchError("the uplink delivered records while the broker was down")
            if uplink.backlog() != len(payloads) or stats.dropped or stats.thinned:
                raise BenchError(f"backlog is {uplink.backlog()} (dropped {stats.dropped}, thinned {stats.thinned}), "
                                 f"expected {len(payloads)}")
            t_start = time.perf_counter()
            await asyncio.to_thread(broker.start)  # returns once the port accepts connections
            t_listening = time.perf_counter()
            await wait_connected(uplink, task, deadline)
            t_connected = time.perf_counter()
            t_empty = await wait_acked(uplink, task, Lane.TELEMETRY, len(payloads), deadline)
            delivered = uplink.counters.delivered[Lane.TELEMETRY.value]
    finally:
        if broker.proc is None:
            await asyncio.to_thread(broker.start)
    return ReplayRound(len(payloads), t_emitted - t0, t_listening - t_start, t_connected - t_listening,
                       t_empty - t_connected, delivered)


# --- the benchmark --------------------------------------------------------------------------------

async def bench(args: argparse.Namespace, workdir: Path) -> Results:
    """Start the broker, measure the outbox size, run the alternating rounds; stop the broker."""
    res = Results()
    tel = telemetry_payloads(args.telemetry)
    ev = event_payloads(args.events)
    rep = telemetry_payloads(args.replay)
    tel_wire, ev_wire = on_the_wire(tel), on_the_wire(ev)
    tel_topic, ev_topic = TOPICS.of("telemetry"), TOPICS.of("events")
    res.payload_bytes = {"telemetry": round(statistics.fmean(map(len, tel)), 1),
                         "event": round(statistics.fmean(map(len, ev)), 1)}
    dirs = (workdir / f"outbox-{i}" for i in itertools.count())
    t_begin = time.monotonic()
    timeout = args.timeout

    res.outbox = await outbox_size(tel, next(dirs), timeout)
    with Mosquitto(workdir / "broker") as broker:
        # Warm-up (unmeasured): the uplink's effective window is what the baseline gets.
        _, res.window, res.protocol = await uplink_round("warmup", broker.port, Lane.TELEMETRY, "telemetry",
                                                         tel[:500], next(dirs), timeout)
        await asyncio.to_thread(bare_round, "warmup", broker.port, tel_topic, tel_wire[:500], res.window, timeout)
        round_s = 0.0
        for i in range(args.rounds):
            elapsed = time.monotonic() - t_begin
            if i and elapsed + round_s > args.max_seconds:
                res.stopped_early = True
                break
            t_round = time.monotonic()
            res.rounds.append(await asyncio.to_thread(bare_round, "bare_telemetry", broker.port, tel_topic, tel_wire,
                                                      res.window, timeout))
            res.rounds.append((await uplink_round("uplink_telemetry", broker.port, Lane.TELEMETRY, "telemetry", tel,
                                                  next(dirs), timeout))[0])
            res.rounds.append(await asyncio.to_thread(bare_round, "bare_event", broker.port, ev_topic, ev_wire,
                                                      res.window, timeout))
            res.rounds.append((await uplink_round("uplink_event", broker.port, Lane.EVENT, "events", ev, next(dirs),
                                                  timeout))[0])
            res.replays.append(await replay_round(broker, rep, next(dirs), timeout))
            round_s = time.monotonic() - t_round
    return res


def summarize(res: Results, args: argparse.Namespace, elapsed_s: float) -> dict[str, Any]:
    """JSON-ready medians and ratios."""
    out: dict[str, Any] = {
        "bench": "uplink",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mosquitto": mosquitto_version(),
        "protocol": res.protocol,
        "window": res.window,
        "rounds_per_kind": len(res.replays),
        "telemetry_records": args.telemetry,
        "event_records": args.events,
        "replay_records": args.replay,
        "payload_bytes": res.payload_bytes,
    }
    for kind in ("bare_telemetry", "uplink_telemetry", "bare_event", "uplink_event"):
        runs = [r for r in res.rounds if r.kind == kind]
        entry: dict[str, Any] = {
            "records_per_s": round(statistics.median(r.records_per_s for r in runs), 1),
            "records_per_s_rounds": [round(r.records_per_s, 1) for r in runs],
            "seconds": round(statistics.median(r.seconds for r in runs), 3),
        }
        emits = [r.emit_seconds for r in runs if r.emit_seconds is not None]
        if emits:
            entry["emit_seconds"] = round(statistics.median(emits), 3)
            entry["emits_per_s"] = round(statistics.median(r.records / r.emit_seconds for r in runs
                                                           if r.emit_seconds), 1)
            entry["resent_rounds"] = [(r.delivered or 0) - r.records for r in runs]
        out[kind] = entry
    out["ratio_telemetry_uplink_to_bare"] = round(
        out["uplink_telemetry"]["records_per_s"] / out["bare_telemetry"]["records_per_s"], 3)
    out["ratio_event_uplink_to_bare"] = round(
        out["uplink_event"]["records_per_s"] / out["bare_event"]["records_per_s"], 3)
    reps = res.replays
    out["replay"] = {
        "records_per_s_from_connect": round(statistics.median(r.from_connect_per_s for r in reps), 1),
        "records_per_s_from_connect_rounds": [round(r.from_connect_per_s, 1) for r in reps],
        "records_per_s_from_broker_start": round(statistics.median(r.from_start_per_s for r in reps), 1),
        "records_per_s_from_broker_start_rounds": [round(r.from_start_per_s, 1) for r in reps],
        "drain_s": round(statistics.median(r.drain_s for r in reps), 3),
        "broker_start_s": round(statistics.median(r.broker_start_s for r in reps), 3),
        "reconnect_s_rounds": [round(r.reconnect_s, 3) for r in reps],
        "emit_s_broker_down": round(statistics.median(r.emit_seconds for r in reps), 3),
        "resent_rounds": [r.delivered - r.records for r in reps],
    }
    out["ratio_replay_to_bare_telemetry"] = round(
        out["replay"]["records_per_s_from_connect"] / out["bare_telemetry"]["records_per_s"], 3)
    out["ratio_replay_to_uplink_telemetry"] = round(
        out["replay"]["records_per_s_from_connect"] / out["uplink_telemetry"]["records_per_s"], 3)
    out["outbox"] = res.outbox
    out["stopped_early"] = res.stopped_early
    out["elapsed_s"] = round(elapsed_s, 1)
    return out


def mosquitto_version() -> str:
    """`mosquitto -h`'s first line, e.g. "mosquitto version 2.0.11"."""
    try:
        done = subprocess.run([MOSQUITTO, "-h"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).decode(errors="replace").splitlines()[0].strip() or "unknown"


def report(r: dict[str, Any]) -> str:
    """Human-readable lines for a result dict."""

    def row(label: str, k: dict[str, Any]) -> str:
        line = (f"  {label:<31} {k['records_per_s']:>9.1f} records/s   all acked after {k['seconds']:.3f} s   "
                f"per round {k['records_per_s_rounds']}")
        if "emit_seconds" in k:
            line += (f"   (emits returned after {k['emit_seconds']:.3f} s: {k['emits_per_s']:.0f}/s; "
                     f"acked twice per round {k['resent_rounds']})")
        return line

    rep, box = r["replay"], r["outbox"]
    early = "  STOPPED EARLY (--max-seconds): fewer rounds than asked" if r["stopped_early"] else ""
    return "\n".join(line for line in [
        f"uplink throughput against one local {r['mosquitto']} (MQTT {r['protocol']}, publish window "
        f"{r['window']}), {r['rounds_per_kind']} rounds of each kind; python {r['python']}, {r['cpus']} cpus; "
        f"{r['elapsed_s']:.1f} s in all",
        early,
        f"  payloads: telemetry {r['payload_bytes']['telemetry']:.0f} B, events {r['payload_bytes']['event']:.0f} B "
        "(stored; the id spliced in on the wire adds about 27 B, to both the uplink and the bare loop)",
        "  medians over the rounds; QoS 1, every record timed until its PUBACK (and, for the uplink, "
        "until the outbox deleted it)",
        row(f"bare paho, {r['telemetry_records']} telemetry", r["bare_telemetry"]),
        row(f"uplink, {r['telemetry_records']} telemetry", r["uplink_telemetry"]),
        f"  ratio uplink/bare (telemetry): {r['ratio_telemetry_uplink_to_bare']:.3f}",
        row(f"bare paho, {r['event_records']} events", r["bare_event"]),
        row(f"uplink, {r['event_records']} events (fsync each)", r["uplink_event"]),
        f"  ratio uplink/bare (events): {r['ratio_event_uplink_to_bare']:.3f}",
        f"  backlog replay, {r['replay_records']} telemetry emitted with the broker down "
        f"(in {rep['emit_s_broker_down']:.3f} s), then the broker started:",
        f"    from connect to empty: {rep['records_per_s_from_connect']:.1f} records/s ({rep['drain_s']:.3f} s)   "
        f"per round {rep['records_per_s_from_connect_rounds']}",
        f"    from broker start:     {rep['records_per_s_from_broker_start']:.1f} records/s   per round "
        f"{rep['records_per_s_from_broker_start_rounds']}; broker start {rep['broker_start_s']:.3f} s, then "
        f"reconnect (backoff) {rep['reconnect_s_rounds']} s",
        f"    ratio replay/bare telemetry: {r['ratio_replay_to_bare_telemetry']:.3f}   "
        f"replay/live uplink telemetry: {r['ratio_replay_to_uplink_telemetry']:.3f}   "
        f"acked twice per round {rep['resent_rounds']}",
        f"  outbox on disk, {box['records']} telemetry records, broker unreachable (backlog {box['backlog']}, "
        f"thinned {box['thinned']}, dropped {box['dropped']}):",
        f"    db + WAL {box['db_bytes'] + box['wal_bytes']:,} B (db {box['db_bytes']:,} + WAL {box['wal_bytes']:,}): "
        f"{box['bytes_per_record']:.1f} B/record vs {box['payload_bytes_per_record']:.1f} B of payload "
        f"({box['ratio_disk_to_payload']:.3f}x)",
        f"    after close (WAL folded in): {box['closed_db_bytes']:,} B: {box['closed_bytes_per_record']:.1f} B/record "
        f"({box['ratio_closed_disk_to_payload']:.3f}x the payload)",
    ] if line)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the benchmark in a temporary directory, print the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--telemetry", type=int, default=20_000, help="telemetry records per round (default 20000)")
    ap.add_argument("--events", type=int, default=3_000, help="event records per round (default 3000)")
    ap.add_argument("--replay", type=int, default=10_000, help="records in the replayed backlog (default 10000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="limit for any one phase, seconds (default 60)")
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="start no new round past this many seconds (default 120)")
    ap.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = ap.parse_args(argv)
    if not (500 <= args.telemetry <= 200_000 and 100 <= args.events <= 50_000 and 500 <= args.replay <= 200_000
            and 1 <= args.rounds <= 20 and 1 <= args.timeout <= 600 and args.max_seconds > 0):
        ap.error("--telemetry and --replay must be in 500..200000, --events in 100..50000, --rounds in 1..20, "
                 "--timeout in 1..600")
    logs.configure(fmt="console", level="error", stream=sys.stderr)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:

        async def run() -> Results:
            # SIGTERM cancels like Ctrl-C does, so the broker is stopped and the directory removed
            main_task = asyncio.current_task()
            assert main_task is not None
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
            # last resort: every wait has its own timeout, this bounds their sum
            async with asyncio.timeout(args.max_seconds + 2 * args.timeout + 60):
                return await bench(args, Path(tmp))

        try:
            res = asyncio.run(run())
        except (BenchError, TimeoutError) as e:
            print(f"bench_uplink: {e or 'overall time limit reached'}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("bench_uplink: interrupted", file=sys.stderr)
            return 130
    result = summarize(res, args, time.monotonic() - t0)
    print(report(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
