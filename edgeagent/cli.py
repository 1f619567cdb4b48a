"""The `edgeagent` command. Every failure a user can cause ends in a clear message and an exit
status, never a traceback: 0 ok, 1 runtime failure, 2 bad configuration or usage."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeagent import __version__, config, logs

EXIT_OK = 0
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeagent", description="Edge daemon for substations and battery storage.")
    p.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon with a site config")
    run.add_argument("-c", "--config", required=True, type=Path, help="site config (TOML)")
    run.add_argument("--state-dir", type=Path, help="override storage.dir from the config")
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override log.format")

    check = sub.add_parser("check-config", help="validate a config file without starting anything")
    check.add_argument("file", type=Path)

    demo = sub.add_parser("demo", help="run a simulated site (HIL plant) and the daemon together")
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds and print a summary (default: until Ctrl-C)")
    demo.add_argument("--scenario", default="sunny-day", help="plant scenario name or file (default sunny-day)")
    demo.add_argument("--speed", type=float, default=1.0, metavar="X", help="run the plant's clock X times faster")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    demo.add_argument("--state-dir", type=Path, help="keep state (logs, outbox, later audit) in DIR")
    demo.add_argument("--broker", metavar="URL", help="publish to this MQTT broker (mqtt://HOST:PORT) instead of "
                      "a local mosquitto started for the demo")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            from edgeagent.demo import run_demo

            return run_demo(args.scenario, args.duration, args.speed, args.json, args.state_dir, args.broker)
    except KeyboardInterrupt:
        return EXIT_OK
    return config.EXIT_CONFIG


def _check_config(path: Path) -> int:
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        n = len(exc.problems)
        print(f"{path}: {n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return config.EXIT_CONFIG
    points = sum(len(d.point_names()) for d in cfg.devices)
    print(f"{path}: ok (site {cfg.site.site_id}, node {cfg.site.node_id}, {len(cfg.devices)} devices, "
          f"{points} points, scan {cfg.scan.period_s * 1000:g} ms)")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from edgeagent.daemon import Daemon, serve

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return config.EXIT_CONFIG
    state_dir = args.state_dir or Path(cfg.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cannot use state directory {state_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    logs.configure(args.log_format or cfg.log.format, cfg.log.level)
    asyncio.run(serve(Daemon(cfg)))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
