"""Tools for validating a parsed TOML document and reporting every problem at once.

Errors read `FILE:LINE: key.path: what is wrong (got VALUE)`, so a technician can go straight to
the line. tomllib keeps no positions, so `KeyLines` recovers them from the text: good enough for
the config files people write (one key per line, tables and arrays of tables).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class KeyLines:
    """Maps key paths such as ``devices.pcc.points[2].address`` to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        array_counts: dict[str, int] = {}
        prefix = ""
        depth = 0
        for lineno, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                header = _HEADER.match(line)
                if header:
                    parts = _split_dotted(header.group(2))
                    path = ".".join(parts)
                    if header.group(1) == "[[":
                        index = array_counts.get(path, 0)
                        array_counts[path] = index + 1
                        path = f"{path}[{index}]"
                    prefix = path
                    self._lines.setdefault(path, lineno)
                    continue
                key = _KEY.match(line)
                if key:
                    path = ".".join(_split_dotted(key.group(1)))
                    full = f"{prefix}.{path}" if prefix else path
                    self._lines.setdefault(full, lineno)
            depth += _bracket_balance(line)
            depth = max(depth, 0)

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its nearest enclosing key that has one."""
        probe = path
        while probe:
            if probe in self._lines:
                return self._lines[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return None


def _bracket_balance(line: str) -> int:
    """Net open brackets on a line outside strings and comments (multi-line arrays/tables)."""
    balance, quote = 0, ""
    for ch in line:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    line: int | None


_MISSING = object()


@dataclass
class Checker:
    """Collects problems while typed values are pulled out of a parsed TOML mapping."""

    file: str
    lines: KeyLines
    problems: list[Problem] = field(default_factory=list)

    def build(self, path: str, make: Callable[[], T]) -> T | None:
        """Construct a value that validates itself; its ValueError (or KeyError) becomes a problem at
        `path`, so a mistake the value's own checks find is still reported with file and line."""
        try:
            return make()
        except (ValueError, KeyError) as exc:
            self.error(path, str(exc).strip("'\""))
            return None

    def error(self, path: str, message: str, got: Any = _MISSING) -> None:
        if got is not _MISSING:
            message = f"{message} (got {_show(got)})"
        self.problems.append(Problem(path, message, self.lines.line_of(path)))

    def format(self) -> list[str]:
        out = []
        for p in sorted(self.problems, key=lambda p: (p.line or 0, p.path)):
            where = f"{self.file}:{p.line}" if p.line else self.file
            out.append(f"{where}: {p.path}: {p.message}")
        return out

    def only_keys(self, table: Mapping[str, Any], path: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.error(_join(path, key), f"unknown key{hint}")

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.error(_join(path, key), "must be a table", value)
            return {}
        return value

    def string(self, t: Mapping[str, Any], key: str, path: str, default: Any = _MISSING,
               choices: Iterable[str] | None = None, pattern: str | None = None) -> str:
        value = self._get(t, key, path, default)
        if value is _MISSING:
            return ""
        if not isinstance(value, str):
            self.error(_join(path, key), "must be a string", value)
            return default if isinstance(default, str) else ""
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.error(_join(path, key), f"must be one of {', '.join(options)}", value)
        if pattern is not None and not re.fullmatch(pattern, value):
            self.error(_join(path, key), f"must match {pattern}", value)
        return value

    def number(self, t: Mapping[str, Any], key: str, path: str, default: Any = _MISSING,
               minimum: float | None = None, maximum: float | None = None,
               integer: bool = False) -> float:
        value = self._get(t, key, path, default)
        if value is _MISSING:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and isinstance(value, float)):
            self.error(_join(path, key), "must be an integer" if integer else "must be a number", value)
            return float(default) if isinstance(default, int | float) else 0.0
        if value != value:  # NaN passes every comparison below
            self.error(_join(path, key), "must be a number", value)
            return float(default) if isinstance(default, int | float) else 0.0
        if minimum is not None and value < minimum:
            self.error(_join(path, key), f"must be at least {minimum:g}", value)
        if maximum is not None and value > maximum:
            self.error(_join(path, key), f"must be at most {maximum:g}", value)
        return float(value)

    def integer(self, t: Mapping[str, Any], key: str, path: str, default: Any = _MISSING,
                minimum: int | None = None, maximum: int | None = None) -> int:
        return int(self.number(t, key, path, default, minimum, maximum, integer=True))

    def boolean(self, t: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> bool:
        value = self._get(t, key, path, default)
        if value is _MISSING:
            return False
        if not isinstance(value, bool):
            self.error(_join(path, key), "must be true or false", value)
            return bool(default) if isinstance(default, bool) else False
        return value

    def _get(self, t: Mapping[str, Any], key: str, path: str, default: Any) -> Any:
        if key in t:
            return t[key]
        if default is _MISSING:
            self.error(_join(path, key), "is required")
        return default


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
