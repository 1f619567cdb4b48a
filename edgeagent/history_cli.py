"""The `edgeagent history` command's glue: config, import, and the report or the problems on stderr."""

from __future__ import annotations

import argparse
import sys

from edgeagent import config
from edgeagent.history_import import HistoryImportError, import_csv
from edgeagent.history_store import HistoryError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = sub.add_parser("history", help="the daemon's hourly point history")
    history_sub = history.add_subparsers(dest="history_command", required=True, metavar="SUBCOMMAND")
    imp = history_sub.add_parser("import", help="load a historian export or an ETT-format CSV into the history "
                                 "(works while the daemon runs)")
    imp.add_argument("file", metavar="FILE.csv", help="CSV with a header, a timestamp column and value columns")
    imp.add_argument("-c", "--config", required=True, help="site config (its storage.dir holds the history)")
    imp.add_argument("--map", action="append", default=[], metavar="COLUMN=POINT", dest="maps",
                     help="load COLUMN into POINT (repeatable), e.g. OT=xfmr.top_oil_c")
    imp.add_argument("--timezone", metavar="TZ", help="zone of timestamps without an offset (default: site.timezone)")
    imp.add_argument("--replace", action="store_true", help="overwrite hours that already hold live data")
    imp.add_argument("--skip-bad", action="store_true", help="leave bad cells out (counted) instead of refusing")
    imp.add_argument("--dry-run", action="store_true", help="check everything and report, write nothing")


def main_history(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return config.EXIT_CONFIG
    try:
        report = import_csv(args.file, cfg, args.maps, args.timezone, replace=args.replace, dry_run=args.dry_run,
                            skip_bad=args.skip_bad)
    except HistoryImportError as exc:
        print(f"edgeagent history import: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    except HistoryError as exc:
        print(f"edgeagent history import: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0
