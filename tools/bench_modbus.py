"""Benchmark: Modbus polling throughput of edgeagent's adapter vs a raw pymodbus read loop.

One pymodbus TCP server (`tests.modbus_server.TestServer`, on 127.0.0.1 only) serves a register map
of 100 points (int16, uint32 and float32, in holding and input registers, laid out so that
`plan_reads` groups them into 9 read blocks). Three clients take turns against it:

* `raw` (the baseline asked for): one `AsyncModbusTcpClient` issuing exactly the adapter's planned
  reads (same table, address and count as `device.blocks`) back to back: no decoding, no process
  image, no pause between passes;
* `adapter`: a `ModbusDevice` (`kind = "modbus"`, `poll_ms = 10`, the minimum) running its real
  `session()`: read the blocks, decode, write samples to a `ProcessImage`, wait out the poll period;
* `paced`: the raw loop again, but starting a pass only every `poll_ms`, as the adapter does.

Rounds alternate (raw, adapter, paced, raw, adapter, paced, …) so slow drifts of a noisy machine hit
all alike; each round runs a fixed number of seconds after connecting and one unmeasured pass/poll.
The report gives per-kind medians and ratios. The headline ratio adapter/raw (requests per second)
is capped by the poll period: the adapter cannot exceed 1000/poll_ms polls per second, the raw loop
never waits. The cost of the adapter itself shows in the time per poll (`_poll`: all block reads,
decoding and image writes), compared with one raw pass over the same reads; the paced loop is the
fair partner for that comparison, because a process that idles between polls wakes up more slowly
than one that never sleeps.

By default the server runs in a child process (this script with `--serve`), so server and clients do
not share one event loop; `--inproc` puts it in the benchmark's own event loop. The child serves
only while its stdin is open and for at most a fixed lifetime.

Run from the repo root: `.venv/bin/python tools/bench_modbus.py [--seconds S] [--rounds N] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymodbus.client import AsyncModbusTcpClient

from edgeagent import config, logs
from edgeagent.field.modbus import ModbusDevice
from edgeagent.field.points import RegType, Table, WordOrder
from edgeagent.field.readplan import ReadBlock
from edgeagent.field.registers import encode
from edgeagent.image import PointSpec, ProcessImage, Quality
from tests.modbus_server import Registers, TestServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
UNIT_ID = 1
TIMEOUT_MS = 1000


@dataclass(frozen=True, slots=True)
class PointDef:
    """One point of the benchmark's register map, and the value the server holds for it."""

    name: str
    table: Table
    address: int
    type: RegType
    word_order: WordOrder
    value: float


def layout() -> list[PointDef]:
    """100 points in four groups that plan into 9 read blocks:

    holding 0..: 30 points, packed (1 block); holding 1000..: 40 points with gaps of 0-4 registers
    (more than 125 registers, so 2 blocks); input 0..: 20 packed points (1 block); holding 20000..:
    5 pairs of points 100 registers apart (5 blocks).
    """
    types = (RegType.INT16, RegType.UINT32, RegType.FLOAT32)
    points: list[PointDef] = []

    def add(table: Table, address: int) -> int:
        i = len(points)
        rtype = types[i % 3]
        order = WordOrder.LITTLE if rtype is RegType.UINT32 and i % 2 else WordOrder.BIG
        value = {RegType.INT16: float((i * 37) % 2000 - 1000),
                 RegType.UINT32: float(100_000 + i * 1234),
                 RegType.FLOAT32: 50.0 + i * 0.25}[rtype]
        points.append(PointDef(f"p{i:03d}", table, address, rtype, order, value))
        return address + rtype.size

    address = 0
    for _ in range(30):
        address = add(Table.HOLDING, address)
    address = 1000
    for k in range(40):
        address = add(Table.HOLDING, address) + k % 5
    address = 0
    for _ in range(20):
        address = add(Table.INPUT, address)
    for pair in range(5):
        address = 20_000 + 100 * pair
        add(Table.HOLDING, add(Table.HOLDING, address))
    return points


def device_toml(points: Sequence[PointDef], port: int, poll_ms: int) -> str:
    """The config text of one `kind = "modbus"` device with these points."""
    lines = ['[site]\nid = "bench"\nnode = "bench"\n', "[devices.dev]", 'kind = "modbus"',
             f'host = "{HOST}"', f"port = {port}", f"unit_id = {UNIT_ID}", f"poll_ms = {poll_ms}",
             f"timeout_ms = {TIMEOUT_MS}", ""]
    for p in points:
        lines += ["[[devices.dev.points]]", f'name = "{p.name}"', f"address = {p.address}",
                  f'type = "{p.type.value}"', f'table = "{p.table.value}"',
                  f'word_order = "{p.word_order.value}"', ""]
    return "\n".join(lines)


def fill(registers: Registers, points: Sequence[PointDef]) -> None:
    """Store every point's value in the server's registers."""
    for p in points:
        raw: int | float = p.value if p.type is RegType.FLOAT32 else int(p.value)
        registers.set(p.address, encode(raw, p.type, p.word_order), p.table.value)


# --- the server: in a child process (default) or in this event loop --------------------------------

async def serve(lifetime_s: float) -> None:
    """Child process: serve on a free loopback port until stdin closes or `lifetime_s` passes."""
    server = TestServer()
    fill(server.registers, layout())
    await server.start()
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed our stdin or died
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait_stdin, daemon=True).start()
    print(f"ready {server.port}", flush=True)
    try:
        async with asyncio.timeout(lifetime_s):
            await closed.wait()
    except TimeoutError:
        pass
    finally:
        print(f"reads {server.registers.reads}", flush=True)
        await server.stop()


class Server:
    """The benchmark's handle on the server, wherever it runs."""

    def __init__(self, inproc: bool, lifetime_s: float) -> None:
        self.inproc = inproc
        self.lifetime_s = lifetime_s
        self.port = 0
        self.reads: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._server: TestServer | None = None

    async def start(self) -> None:
        if self.inproc:
            self._server = TestServer()
            fill(self._server.registers, layout())
            await self._server.start()
            self.port = self._server.port
            return
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), "--serve", "--lifetime", str(self.lifetime_s),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        assert self._proc.stdout is not None
        line = (await asyncio.wait_for(self._proc.stdout.readline(), timeout=30)).decode()
        if not line.startswith("ready "):
            await self.stop()
            raise SystemExit(f"server process failed to start (said {line!r})")
        self.port = int(line.split()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self.reads = self._server.registers.reads
            await self._server.stop()
        if self._proc is not None:
            proc, self._proc = self._proc, None
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()  # the child's signal to stop
            try:
                out = await asyncio.wait_for(proc.stdout.read(), timeout=15)
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                out = b""
            for line in out.decode().splitlines():
                if line.startswith("reads "):
                    self.reads = int(line.split()[1])


# --- the two clients ------------------------------------------------------------------------------

class TimedDevice(ModbusDevice):
    """The real adapter, with each poll timed (all block reads, decoding and image writes)."""

    def __init__(self, cfg: config.DeviceConfig, image: ProcessImage) -> None:
        super().__init__(cfg, image)
        self.poll_ns: list[int] = []

    async def _poll(self, timeouts: int) -> int:
        t0 = time.perf_counter_ns()
        try:
            return await super()._poll(timeouts)
        finally:
            self.poll_ns.append(time.perf_counter_ns() - t0)


@dataclass
class Round:
    """One measured round of one client."""

    kind: str  # "raw" | "paced" | "adapter"
    seconds: float
    passes: int  # raw: passes over all blocks; adapter: polls
    requests: int
    pass_ns: list[int]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def passes_per_s(self) -> float:
        return self.passes / self.seconds


async def raw_round(port: int, blocks: Sequence[ReadBlock], seconds: float, period_s: float = 0.0) -> Round:
    """Issue the planned reads for `seconds` after one unmeasured pass.

    With `period_s` 0 the passes run back to back (kind "raw"); otherwise each pass starts
    `period_s` after the previous one started, as the adapter paces its polls (kind "paced").
    """
    client = AsyncModbusTcpClient(HOST, port=port, timeout=TIMEOUT_MS / 1000, retries=0, reconnect_delay=0)
    try:
        async with asyncio.timeout(5):
            if not await client.connect():
                raise SystemExit(f"raw client cannot connect to {HOST}:{port}")
        reads = [(client.read_holding_registers if b.table is Table.HOLDING else client.read_input_registers,
                  b.address, b.count) for b in blocks]

        async def one_pass() -> None:
            for fn, address, count in reads:
                reply = await fn(address, count=count, device_id=UNIT_ID)
                if reply.isError() or len(reply.registers) != count:
                    raise SystemExit(f"raw read of {count} at {address} failed: {reply}")

        await one_pass()
        pass_ns: list[int] = []
        clock = time.perf_counter_ns
        t_start = clock()
        end = t_start + int(seconds * 1e9)
        while (t0 := clock()) < end:
            await one_pass()
            t1 = clock()
            pass_ns.append(t1 - t0)
            delay = period_s - (t1 - t0) / 1e9
            if period_s and delay > 0:
                await asyncio.sleep(delay)
        elapsed = (clock() - t_start) / 1e9
        kind = "paced" if period_s else "raw"
        return Round(kind, elapsed, len(pass_ns), len(pass_ns) * len(reads), pass_ns)
    finally:
        client.close()


async def stop_session(task: asyncio.Task[None], device: ModbusDevice) -> float:
    """Stop the session as the daemon does (`device.stop()`, then one cancel); return the
    seconds it took. `stop()` matters on Python 3.11, where pymodbus' `asyncio.wait_for` can
    swallow a cancel that arrives together with a reply."""
    t0 = time.perf_counter()
    device.stop()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    if not task.done():
        raise SystemExit("adapter session did not stop within 5 s")
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
    return time.perf_counter() - t0


async def adapter_round(cfg: config.DeviceConfig, seconds: float) -> tuple[Round, int, float]:
    """Run the adapter's session for `seconds` after its first poll.

    Returns the round, the number of GOOD points at the end, and the seconds the
    session needed to stop.
    """
    image = ProcessImage([PointSpec(n, "", cfg.max_age_s) for n in cfg.point_names()])
    device = TimedDevice(cfg, image)
    task = asyncio.create_task(device.session())
    try:
        deadline = time.monotonic() + 5
        while device.polls < 1:
            if task.done():
                task.result()  # raises DeviceOffline with the reason
                raise SystemExit("adapter session ended before its first poll")
            if time.monotonic() > deadline:
                raise SystemExit("adapter did not complete a poll within 5 s")
            await asyncio.sleep(0.001)
        polls0, timed0, t0 = device.polls, len(device.poll_ns), time.perf_counter()
        await asyncio.sleep(seconds)
        polls1, timed1, t1 = device.polls, len(device.poll_ns), time.perf_counter()
        if task.done():
            task.result()
            raise SystemExit("adapter session ended during the round")
    finally:
        stop_s = await stop_session(task, device)
    good = sum(image.latest(n).quality is Quality.GOOD for n in cfg.point_names())
    polls = polls1 - polls0
    measured = Round("adapter", t1 - t0, polls, polls * len(device.blocks), device.poll_ns[timed0:timed1])
    return measured, good, stop_s


# --- the benchmark --------------------------------------------------------------------------------

def _ms(ns: Sequence[int], q: float | None = None) -> float:
    """Median (or nearest-rank percentile q) of nanosecond samples, in milliseconds."""
    s = sorted(ns)
    if not s:
        return math.nan
    if q is None:
        return statistics.median(s) / 1e6
    return s[max(1, math.ceil(q / 100 * len(s))) - 1] / 1e6


async def bench(seconds: float, rounds: int, poll_ms: int, inproc: bool) -> dict[str, Any]:
    """Start the server, run the alternating rounds, stop the server; return JSON-ready results."""
    points = layout()
    server = Server(inproc, lifetime_s=rounds * 3 * (seconds + 15) + 60)
    await server.start()
    done: list[Round] = []
    good_points: list[int] = []
    stops_s: list[float] = []
    try:
        cfg = config.parse(device_toml(points, server.port, poll_ms)).devices[0]
        blocks = ModbusDevice(cfg, ProcessImage([])).blocks
        for _ in range(rounds):
            done.append(await raw_round(server.port, blocks, seconds))
            adapter, good, stop_s = await adapter_round(cfg, seconds)
            done.append(adapter)
            good_points.append(good)
            stops_s.append(stop_s)
            done.append(await raw_round(server.port, blocks, seconds, period_s=cfg.poll_s))
    finally:
        await server.stop()

    n_points, n_blocks = len(cfg.registers), len(blocks)
    out: dict[str, Any] = {
        "bench": "modbus",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "server": "in-process" if inproc else "child process",
        "seconds_per_round": seconds,
        "rounds_per_kind": rounds,
        "poll_ms": poll_ms,
        "points": n_points,
        "blocks": [[b.table.value, b.address, b.count] for b in blocks],
        "requests_per_poll": n_blocks,
        "requests_per_poll_naive": n_points,
        "request_reduction": round(n_points / n_blocks, 2),
        "polls_per_s_cap": round(1000 / poll_ms, 2),
    }
    for kind in ("raw", "adapter", "paced"):
        runs = [r for r in done if r.kind == kind]
        pass_ns = [ns for r in runs for ns in r.pass_ns]
        pps = statistics.median(r.passes_per_s for r in runs)
        out[kind] = {
            "requests_per_s": round(statistics.median(r.requests_per_s for r in runs), 1),
            "requests_per_s_rounds": [round(r.requests_per_s, 1) for r in runs],
            "polls_per_s": round(pps, 2),
            "points_per_s": round(pps * n_points, 1),
            "poll_ms": {"median": round(_ms(pass_ns), 3), "p99": round(_ms(pass_ns, 99), 3)},
        }
    raw, ada, paced = out["raw"], out["adapter"], out["paced"]
    out["ratio_adapter_to_raw"] = round(ada["requests_per_s"] / raw["requests_per_s"], 3)
    out["ratio_adapter_to_paced"] = round(ada["requests_per_s"] / paced["requests_per_s"], 3)
    out["ratio_poll_ms_adapter_to_raw"] = round(ada["poll_ms"]["median"] / raw["poll_ms"]["median"], 3)
    out["ratio_poll_ms_adapter_to_paced"] = round(ada["poll_ms"]["median"] / paced["poll_ms"]["median"], 3)
    out["adapter_good_points"] = min(good_points)
    out["adapter_stop_ms"] = [round(x * 1000, 2) for x in stops_s]
    out["server_reads"] = server.reads
    out["client_requests_measured"] = sum(r.requests for r in done)
    return out


def report(r: dict[str, Any]) -> str:
    """Human-readable lines for a result dict."""
    blocks = ", ".join(f"{table} {address}+{count}" for table, address, count in r["blocks"])

    def row(label: str, k: dict[str, Any]) -> str:
        return (f"  {label:<31} {k['requests_per_s']:>8.1f} req/s  {k['polls_per_s']:>7.1f} polls/s  "
                f"{k['points_per_s']:>8.0f} points/s   poll median {k['poll_ms']['median']:.3f} ms "
                f"p99 {k['poll_ms']['p99']:.3f} ms   req/s per round {k['requests_per_s_rounds']}")

    stops_ms = r["adapter_stop_ms"]
    return "\n".join([
        f"modbus polling, {r['points']} points, server: {r['server']}, {r['rounds_per_kind']} rounds each of "
        f"raw, adapter and paced raw, {r['seconds_per_round']:g} s per round, poll_ms = {r['poll_ms']}; "
        f"python {r['python']}, {r['cpus']} cpus",
        f"  requests per poll: {r['requests_per_poll']} planned blocks vs {r['requests_per_poll_naive']} "
        f"naive (one per point): {r['request_reduction']:.1f}x fewer",
        f"  blocks: {blocks}",
        "  medians over the rounds; a 'poll' of the raw loops is one pass over the same planned reads",
        row("raw loop, back to back (base)", r["raw"]),
        row("adapter session", r["adapter"]),
        row(f"raw loop, paced at {r['poll_ms']} ms", r["paced"]),
        f"  ratio adapter/raw (req/s): {r['ratio_adapter_to_raw']:.3f}   "
        f"(the adapter cannot exceed {r['polls_per_s_cap']:g} polls/s at poll_ms = {r['poll_ms']})",
        f"  ratio adapter/paced raw (req/s): {r['ratio_adapter_to_paced']:.3f}",
        f"  time per poll, adapter (reads + decode + image writes) vs raw pass: "
        f"{r['ratio_poll_ms_adapter_to_raw']:.3f}x back to back, {r['ratio_poll_ms_adapter_to_paced']:.3f}x paced",
        f"  adapter points GOOD at the end of every round: {r['adapter_good_points']}/{r['points']}",
        f"  time the adapter session took to stop, per round: {stops_ms} ms",
        f"  server answered {r['server_reads']} reads in all; clients sent {r['client_requests_measured']} "
        "inside the measured windows (the rest: connects, warm-up, partial polls)",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options and run the benchmark (or, with --serve, be the server process)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating (default 3)")
    ap.add_argument("--poll-ms", type=int, default=10, help="the adapter's poll_ms (default 10, the minimum)")
    ap.add_argument("--inproc", action="store_true", help="run the server in this process's event loop")
    ap.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lifetime", type=float, default=300.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logs.configure(fmt="console", level="warning", stream=sys.stderr)
    if args.serve:
        asyncio.run(serve(args.lifetime))
        return 0
    if not (0 < args.seconds <= 60 and 1 <= args.rounds <= 20 and args.poll_ms >= 10):
        ap.error("--seconds must be in (0, 60], --rounds in 1..20, --poll-ms at least 10")
    result = asyncio.run(bench(args.seconds, args.rounds, args.poll_ms, args.inproc))
    print(report(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
