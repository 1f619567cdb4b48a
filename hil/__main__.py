"""Command line: ``python -m hil serve`` runs the plant, ``python -m hil list`` shows the scenarios.

``serve`` prints exactly one JSON line to stdout once every device listens::

    {"event": "hil.ready", "scenario": "export-step", "speed": 1.0, "duration_s": 30.0,
     "events": [{"kind": "load_step", "at_s": 10.0, "duration_s": null, "delta_kw": -52.5}],
     "devices": {"meter": {"host": "127.0.0.1", "port": 41234, "unit_id": 1,
                           "sunspec_base": 40000, "models": [1, 203]}, "inverter": {...}, "bess": {...}}}

(``duration_s`` is the scenario's recommended run length in wall seconds at speed 1, or null;
``events`` are its physics and transformer events, timed in plant seconds; a scenario with a
``[transformer]`` table adds ``"transformer": {"url": "opc.tcp://127.0.0.1:PORT", "namespace":
"urn:edgeagent:hil:transformer", "namespace_index": 2, "nodes": {"TopOilTemp": "ns=2;s=...", ...}}``,
see :mod:`hil.transformer_server`), then (optionally) a JSON status
line on stderr every ``--status-interval`` seconds, and runs until SIGTERM or SIGINT (exit 0).
``--trace FILE`` writes one JSON line per physics step to FILE (see :mod:`hil.trace`); it is
flushed at least twice a second and completely on exit, including on SIGTERM.

A bad scenario, a port in use, an unwritable trace file or any other startup error prints one
``hil: error: ...`` line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence

from hil.scenario import DEFAULT_SCENARIO, ScenarioError, list_scenarios, load_scenario
from hil.server import HilError, Plant, serve_plant

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hil", description="edgeagent's simulated PV + BESS plant.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the plant's devices over Modbus TCP (and OPC UA)")
    serve.add_argument("--scenario", default=DEFAULT_SCENARIO, help="shipped scenario name or path to a .toml")
    serve.add_argument("--speed", type=float, default=None, help="plant seconds per wall second (default: scenario)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="meter port; inverter +1, bess +2, transformer OPC UA +3 (0 = ephemeral ports)",
    )
    serve.add_argument(
        "--status-interval", type=float, default=10.0, help="seconds between status lines on stderr (0 = none)"
    )
    serve.add_argument("--trace", metavar="FILE", default=None, help="write one JSON line per physics step to FILE")
    commands.add_parser("list", help="list the shipped scenarios")
    return parser


def _status_line(plant: Plant) -> str:
    state = plant.state
    transformer = plant.transformer_state
    thermal = (
        {}
        if transformer is None
        else {
            "ambient_c": round(transformer.ambient_c, 2),
            "top_oil_c": round(transformer.top_oil_c, 2),
            "hot_spot_c": round(transformer.hot_spot_c, 2),
            "fans_on": transformer.fans_on,
        }
    )
    return json.dumps(
        {
            "event": "hil.status",
            "plant_time": plant.clock.isoformat(timespec="seconds"),
            "meter_w": round(state.meter_w, 1),
            "pv_w": round(state.pv_w, 1),
            "load_w": round(state.load_w, 1),
            "bess_w": round(state.bess_w, 1),
            "soc_pct": round(state.soc_pct, 2),
            "faults": {name: plant.fault_state(name).describe() for name in plant.servers},
            **thermal,
        }
    )


async def _report_status(plant: Plant, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        print(_status_line(plant), file=sys.stderr, flush=True)


async def _serve(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_plant(
        scenario, speed=args.speed, host=args.host, port_base=args.port_base, trace=args.trace
    ) as plant:
        print(json.dumps(plant.ready_event()), flush=True)
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(plant.wait())]
        if args.status_interval > 0:
            waiters.append(asyncio.create_task(_report_status(plant, args.status_interval)))
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        for task in done:
            task.result()  # re-raise if the physics loop died
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        try:
            for scenario in list_scenarios():
                print(f"{scenario.name}\t{scenario.description}")
        except ScenarioError as exc:
            print(f"hil: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    try:
        return asyncio.run(_serve(args))
    except (ScenarioError, HilError) as exc:
        print(f"hil: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"hil: error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("HIL_DEBUG"):
            raise
        print(f"hil: internal error: {type(exc).__name__}: {exc} (set HIL_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
