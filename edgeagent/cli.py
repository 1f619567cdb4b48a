"""The `edgeagent` command. Every failure a user can cause ends in a clear message and an exit
status, never a traceback: 0 ok, 1 runtime failure (or refused by the daemon), 2 bad configuration
or usage, 3 daemon not reachable (`status`, `reset-trip`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeagent import __version__, config, logs

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_UNREACHABLE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeagent", description="Edge daemon for substations and battery storage.")
    p.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon with a site config")
    run.add_argument("-c", "--config", required=True, type=Path, help="site config (TOML)")
    run.add_argument("--state-dir", type=Path, help="override storage.dir from the config")
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override log.format")

    doctor = sub.add_parser("doctor", help="check this box's set-up against a config: one line per check, "
                            "with the fix", add_help=False)
    doctor.add_argument("args", nargs=argparse.REMAINDER, help="-c FILE [--timeout S] [--json]")
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

    status = sub.add_parser("status", help="show the running daemon's health, interlocks and export limit")
    _socket_target(status)
    status.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")

    reset = sub.add_parser("reset-trip", help="reset a latched interlock whose condition has cleared (local only)")
    reset.add_argument("name", help="the interlock's name, as in [[interlocks]] name")
    _socket_target(reset)

    recs = sub.add_parser("recommendations", help="list the recommendations waiting for a decision (and running ones)")
    _socket_target(recs)
    recs.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")

    for name, text in (("confirm", "confirm a recommendation with your key, through the local control socket"),
                       ("reject", "reject a recommendation with your key, through the local control socket")):
        decide = sub.add_parser(name, help=text)
        decide.add_argument("rec_id", metavar="ID", help="the recommendation's id (edgeagent recommendations)")
        if name == "reject":
            decide.add_argument("--reason", required=True, help="why (goes into the audit log)")
        decide.add_argument("--key", required=True, type=Path, metavar="FILE", help="your private key (PEM or OpenSSH)")
        decide.add_argument("--key-id", required=True, help="your key's id in the node's [[trust.keys]]")
        decide.add_argument("--lifetime", type=float, default=60.0, metavar="SECONDS",
                            help="the signed command expires this long after now (default 60)")
        _socket_target(decide)

    audit = sub.add_parser("audit", help="check the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    audit_verify = audit_sub.add_parser("verify", help="verify the hash chain: exit 0 intact, 1 broken (names the "
                                        "first broken record), 2 not an audit folder")
    audit_verify.add_argument("path", type=Path, help="the audit folder, or a state directory holding audit/")
    audit_verify.add_argument("--head", metavar="SEQ:SHA256",
                              help="the chain head published upstream: the chain must reach it unaltered")

    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair for signing commands; prints its "
                            "[[trust.keys]] entry")
    keygen.add_argument("--out", required=True, type=Path, metavar="DIR", help="write KEY_ID.key and KEY_ID.pub here")
    keygen.add_argument("--id", required=True, dest="key_id", metavar="KEY_ID", help="the key's id in trust stores")
    keygen.add_argument("--name", help="the person who holds the key (default: KEY_ID)")

    sign = sub.add_parser("sign", help="build and sign a command; prints it as one line of JSON")
    sign.add_argument("--key", required=True, type=Path, metavar="FILE", help="private key (PEM or OpenSSH)")
    sign.add_argument("--key-id", required=True, help="the key's id in the node's [[trust.keys]]")
    sign.add_argument("--node", required=True, help="the node the command is for (site.node)")
    sign.add_argument("--action", required=True,
                      help="confirm, reject, set_export_limit, clear_export_limit or reset_trip")
    sign.add_argument("--target", required=True, help="recommendation id, interlock name, or export_limit")
    sign.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                      help="an argument such as limit_kw=25 or reason=text (repeatable)")
    sign.add_argument("--lifetime", type=float, default=300.0, metavar="SECONDS",
                      help="the command expires this long after now (default 300)")

    from edgeagent.history_cli import add_parser as add_history_parser

    add_history_parser(sub)
    return p


def _socket_target(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("-c", "--config", type=Path, help="site config: the socket is <storage.dir>/control.sock")
    target.add_argument("--socket", type=Path, help="the daemon's control socket")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["doctor"]:  # its own options (argparse's REMAINDER cannot start with one)
        from edgeagent.doctor import main_doctor

        return main_doctor(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            from edgeagent.demo import run_demo

            return run_demo(args.scenario, args.duration, args.speed, args.json, args.state_dir, args.broker)
        if args.command == "status":
            return _status(args)
        if args.command == "reset-trip":
            return _reset_trip(args)
        if args.command == "recommendations":
            return _recommendations(args)
        if args.command in ("confirm", "reject"):
            return _decide(args)
        if args.command == "audit":
            from edgeagent.decisions.audit_cli import main_verify

            return main_verify(args.path, args.head)
        if args.command == "keygen":
            from edgeagent.decisions.keys_cli import run_keygen

            return run_keygen(args.out, args.key_id, args.name)
        if args.command == "history":
            from edgeagent.history_cli import main_history

            return main_history(args)
        if args.command == "sign":
            from edgeagent.decisions.keys_cli import run_sign

            return run_sign(args.key, args.key_id, args.node, args.action, args.target, args.arg, args.lifetime)
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
    if args.state_dir is not None:
        cfg = dataclasses.replace(cfg, state_dir=str(state_dir))
    logs.configure(args.log_format or cfg.log.format, cfg.log.level)
    from edgeagent.control import ControlStartError

    try:
        asyncio.run(serve(Daemon(cfg)))
    except ControlStartError as exc:
        print(f"edgeagent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _ask(args: argparse.Namespace, label: str, cmd: str, cmd_args: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send one request to the daemon named by --socket or -c; (exit status, reply)."""
    from edgeagent.control_client import ControlError, call

    path: Path = args.socket
    if path is None:
        try:
            path = Path(config.load(args.config).state_dir) / "control.sock"
        except config.ConfigError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            return config.EXIT_CONFIG, {}
    try:
        reply = call(path, cmd, cmd_args)
    except ControlError as exc:
        print(f"edgeagent: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE, {}
    if not reply["ok"]:
        print(f"{label} refused: {reply['error']}", file=sys.stderr)
        return EXIT_FAILURE, reply
    return EXIT_OK, reply


def _reset_trip(args: argparse.Namespace) -> int:
    code, reply = _ask(args, f"reset-trip {args.name}", "reset-trip", {"name": args.name})
    if code == EXIT_OK:
        print(f"{args.name} reset by {reply.get('by', '?')}: its safe action is lifted")
    return code


def _recommendations(args: argparse.Namespace) -> int:
    from edgeagent.decisions.decide_cli import recommendations_text

    code, reply = _ask(args, "recommendations", "recommendations", {})
    if code == EXIT_OK:
        items = reply.get("recommendations", [])
        print(json.dumps(items, indent=2) if args.json else recommendations_text(items))
    return code


def _decide(args: argparse.Namespace) -> int:
    """Ask the daemon for its node id, sign the decision with the person's key, send it over the socket."""
    from edgeagent.decisions.decide_cli import signed_decision
    from edgeagent.decisions.keys_cli import KeyToolError

    code, reply = _ask(args, "status", "status", {})
    if code != EXIT_OK:
        return code
    try:
        message = signed_decision(args.key, args.key_id, str(reply.get("node", "")), args.command, args.rec_id,
                                  getattr(args, "reason", None), args.lifetime)
    except ValueError as exc:
        print(f"edgeagent {args.command}: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    except KeyToolError as exc:
        print(f"edgeagent {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    code, reply = _ask(args, f"{args.command} {args.rec_id}", "decide", {"command": message})
    if code == EXIT_OK:
        print(f"{args.rec_id}: {args.command}ed by {reply.get('by')} (key {reply.get('key_id')}), "
              f"now {reply.get('state')}")
    elif reply.get("code"):
        print(f"reason code: {reply['code']}", file=sys.stderr)
    return code


def _status(args: argparse.Namespace) -> int:
    code, reply = _ask(args, "status", "status", {})
    if code == EXIT_OK:
        print(json.dumps(reply, indent=2) if args.json else _status_text(reply))
    return code


def _status_text(reply: Mapping[str, Any]) -> str:
    """A few lines a technician reads at a glance; the JSON has everything."""
    lines = [f"edgeagent {reply.get('version', '?')} site {reply.get('site', '?')}/{reply.get('node', '?')}, "
             f"up {reply.get('uptime_s', '?')} s: {reply.get('health', '')}"]
    offline = reply.get("devices", {}).get("offline", {})
    lines += [f"  offline: {name} ({why or 'no reason given'})" for name, why in offline.items()]
    interlocks = reply.get("interlocks", [])
    active = reply.get("active_trips", [])
    lines.append(f"interlocks: {len(active)} active of {len(interlocks)}" if interlocks else "interlocks: none")
    for item in interlocks:
        latching = " (latching)" if item.get("latching") else ""
        hint = "  -> edgeagent reset-trip " + str(item.get("name")) if item.get("state") == "latched" else ""
        lines.append(f"  {item.get('name')}: {item.get('state')}{latching}{hint}")
    limit = reply.get("export_limit")
    if limit:
        export = limit.get("export_kw")
        lines.append(f"export limit: {limit.get('limit_kw')} kW ({limit.get('source')}), {limit.get('state')}"
                     + (f" ({limit['fallback_reason']})" if limit.get("fallback_reason") else "")
                     + (f", export {export} kW" if export is not None else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
