"""The hash-chained audit log: format, chaining, rotation, retention, crash recovery, tamper detection, CLI.

The format checks re-implement the documented rules (canonical JSON, sha256 of the line's bytes without
its newline, 64 zeros before the first record) here rather than calling the module's helpers, so a change
to the on-disk format that an upstream verifier would trip over fails these tests.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import json
import math
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent import cli
from edgeagent.decisions import audit
from edgeagent.decisions.audit import AuditDataError, AuditError, AuditLog
from edgeagent.decisions.audit_verify import AuditPathError, verify

ZEROS = "0" * 64


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def log_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-[0-9]*.jsonl"))


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path.name} does not end with a newline"
    return data.split(b"\n")[:-1]


def all_lines(directory: Path) -> list[bytes]:
    return [line for path in log_files(directory) for line in lines_of(path)]


def check_format(directory: Path, first_prev: str = ZEROS) -> list[dict[str, Any]]:
    """Every line canonical, every prev the sha256 of the line before, seq counting up by one."""
    records: list[dict[str, Any]] = []
    prev = first_prev
    for line in all_lines(directory):
        record = json.loads(line)
        assert set(record) == {"seq", "t", "kind", "data", "prev"}
        assert canonical(record) == line
        assert record["prev"] == prev
        if records:
            assert record["seq"] == records[-1]["seq"] + 1
        assert record["t"].endswith("Z")
        prev = sha(line)
        records.append(record)
    return records


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append("setpoint.written", {"i": i, "kw": i * 1.5, "by": "operator ü", "ok": i % 2 == 0})


# -- writing, chaining, resuming -------------------------------------------------------------------


def test_round_trip_writes_the_documented_format(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    with AuditLog(directory, fsync=True) as log:
        assert log.head == (0, ZEROS)
        first = log.append("config.loaded", {"sha256": "ab" * 32, "path": "/etc/edgeagent/site.toml"})
        log.append("model.loaded", {"name": "thermal", "version": "1.2", "nested": {"list": [1, 2.5, None]}})
        last = log.append("command.refused", {"by": "anna", "reason": "expired 12 s ago", "text": "größer → ok"})
        assert log.head == (3, last.hash)
    records = check_format(directory)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["kind"] for r in records] == ["config.loaded", "model.loaded", "command.refused"]
    assert records[2]["data"]["text"] == "größer → ok"
    lines = all_lines(directory)
    assert first.seq == 1 and first.line.encode("utf-8") == lines[0] and first.hash == sha(lines[0])
    assert "größer" in lines[2].decode("utf-8")  # non-ASCII written as itself, not \u-escaped
    result = verify(directory)
    assert result.ok and result.problem is None and not result.warnings
    assert (result.records, result.first_seq, result.last_seq, result.head_hash) == (3, 1, 3, sha(lines[2]))


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 5)
        head = log.head
    with AuditLog(tmp_path, fsync=False) as log:
        assert log.head == head
        record = log.append("daemon.started", {})
    assert record.seq == 6
    assert json.loads(record.line)["prev"] == head[1]
    assert len(check_format(tmp_path)) == 6
    assert verify(tmp_path).ok


def test_reopening_with_an_empty_newest_file_chains_to_the_file_before(tmp_path: Path) -> None:
    """A crash right after a rotation created the next file leaves it empty; the chain goes on in it."""
    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 3)
        head = log.head
    (tmp_path / "audit-000002.jsonl").touch()
    assert verify(tmp_path).ok
    with AuditLog(tmp_path, fsync=False) as log:
        assert log.head == head
        log.append("daemon.started", {})
    assert len(lines_of(tmp_path / "audit-000002.jsonl")) == 1
    assert len(check_format(tmp_path)) == 4


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    max_bytes = 700
    with AuditLog(tmp_path, max_bytes=max_bytes, fsync=False) as log:
        fill(log, 40)
        big = log.append("model.loaded", {"blob": "x" * 2000})  # larger than a file: gets one of its own
        log.append("after.big", {})
    files = log_files(tmp_path)
    assert len(files) >= 10
    for path in files:
        lines = lines_of(path)
        assert lines, f"{path.name} is empty"
        assert path.stat().st_size <= max_bytes or len(lines) == 1
    assert [p.name for p in files] == [f"audit-{n:06d}.jsonl" for n in range(1, len(files) + 1)]
    assert lines_of(files[-2]) == [big.line.encode()]
    for before, after in itertools.pairwise(files):
        assert json.loads(lines_of(after)[0])["prev"] == sha(lines_of(before)[-1])
    assert len(check_format(tmp_path)) == 42
    result = verify(tmp_path)
    assert result.ok and result.records == 42 and result.last_seq == 42


def test_retention_deletes_whole_old_files_and_verify_says_where_the_chain_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditLog(tmp_path, max_bytes=600, fsync=False, keep_files=3) as log:
        fill(log, 60)
        head = log.head
    files = log_files(tmp_path)
    assert len(files) == 3 and files[0].name != "audit-000001.jsonl"
    records = [json.loads(line) for line in all_lines(tmp_path)]
    retention = [r for r in records if r["kind"] == "audit.retention"]
    assert retention and retention[-1]["data"]["chain_starts_at_seq"] == records[0]["seq"]
    assert all(name not in {p.name for p in files} for name in retention[-1]["data"]["removed_files"])
    check_format(tmp_path, first_prev=records[0]["prev"])
    result = verify(tmp_path, expected_head=head)
    assert result.ok and result.first_seq == records[0]["seq"] > 1
    assert f"chain starts at seq {result.first_seq} (older files removed by retention)" in result.warnings
    assert cli.main(["audit", "verify", str(tmp_path)]) == 0
    assert "older files removed by retention" in capsys.readouterr().out

    files[0].unlink()  # beyond what any audit.retention record says
    result = verify(tmp_path)
    assert not result.ok and result.problem_file == files[1].name and result.problem_line == 1
    assert "the latest audit.retention record says it starts at seq" in (result.problem or "")


def test_removing_the_oldest_file_by_hand_is_detected(tmp_path: Path) -> None:
    with AuditLog(tmp_path, max_bytes=600, fsync=False) as log:
        fill(log, 20)
    (tmp_path / "audit-000001.jsonl").unlink()
    result = verify(tmp_path)
    assert not result.ok
    assert (result.problem_file, result.problem_line) == ("audit-000002.jsonl", 1)
    assert "no audit.retention record accounts for the older records" in (result.problem or "")


def test_files_and_folder_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "audit"
    with AuditLog(directory, max_bytes=500, fsync=True) as log:
        fill(log, 10)
    with log_files(directory)[-1].open("ab") as f:
        f.write(b'{"data":')
    AuditLog(directory, fsync=False).close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    paths = list(directory.iterdir())
    assert any(p.name.startswith("audit-torn-") for p in paths) and len(log_files(directory)) >= 3
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_threads_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path, max_bytes=4000, fsync=False) as log:
        def worker(w: int) -> None:
            for i in range(50):
                log.append("command.received", {"worker": w, "i": i})

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = check_format(tmp_path)
    assert len(records) == 200
    for w in range(4):
        assert [r["data"]["i"] for r in records if r["data"]["worker"] == w] == list(range(50))
    assert verify(tmp_path).ok


async def test_append_async_keeps_call_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, fsync=True)
    try:
        written = await asyncio.gather(*(log.append_async("recommendation.transition", {"n": n}) for n in range(30)))
    finally:
        log.close()
    assert [r.seq for r in written] == list(range(1, 31))
    assert [r["data"]["n"] for r in check_format(tmp_path)] == list(range(30))
    with pytest.raises(AuditError, match="closed"):
        log.append("late", {})
    with pytest.raises(AuditError, match="closed"):
        await log.append_async("late", {})


@pytest.mark.parametrize(("kind", "data", "message"), [
    ("x.nan", {"kw": math.nan}, r"data\.kw is nan: audit data must be finite"),
    ("x.inf", {"values": [1.0, math.inf]}, r"data\.values\[1\] is inf"),
    ("x.neg", {"a": {"b": -math.inf}}, r"data\.a\.b is -inf"),
    ("x.obj", {"when": object()}, r"data\.when is a object"),
    ("x.set", {"ids": {1, 2}}, r"data\.ids is a set"),
    ("x.bytes", {"raw": b"\x00"}, r"data\.raw is a bytes"),
    ("x.key", {"a": {1: "one"}}, r"data\.a has the key 1 \(int\): keys must be strings"),
    ("x.surrogate", {"text": "\ud800"}, r"cannot be written as JSON"),
    ("Bad Kind", {}, r"audit kind 'Bad Kind' must be dotted lower-case words"),
    ("", {}, r"audit kind '' must be"),
    ("x.list", [1, 2], r"must be a mapping, not list"),
])
def test_bad_data_is_refused_and_nothing_is_written(tmp_path: Path, kind: str, data: Any, message: str) -> None:
    with AuditLog(tmp_path, fsync=False) as log:
        log.append("config.loaded", {"sha256": "00"})
        head, before = log.head, (tmp_path / "audit-000001.jsonl").read_bytes()
        with pytest.raises(AuditDataError, match=message):
            log.append(kind, data)
        assert isinstance(AuditDataError("x"), ValueError)
        assert log.head == head
        assert (tmp_path / "audit-000001.jsonl").read_bytes() == before
        log.append("config.loaded", {"sha256": "01"})  # and the log goes on
    assert len(check_format(tmp_path)) == 2


def test_a_failed_write_is_cut_back_and_the_chain_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_disk_full(fd: int, payload: bytes) -> None:
        os.write(fd, payload[: len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 3)
        head, before = log.head, (tmp_path / "audit-000001.jsonl").read_bytes()
        with monkeypatch.context() as m:
            m.setattr(audit, "_write_all", half_then_disk_full)
            with pytest.raises(OSError, match="No space left"):
                log.append("setpoint.written", {"kw": 5})
        assert log.head == head and (tmp_path / "audit-000001.jsonl").read_bytes() == before
        log.append("setpoint.written", {"kw": 5})
    assert len(check_format(tmp_path)) == 4 and verify(tmp_path).ok


# -- crash mid-write ------------------------------------------------------------------------------


@pytest.mark.parametrize("torn", [b'{"data":{"i":3', b"\x00" * 300, b"\x00\x00\x00\n", b'{"data":{}}garbage\n'])
def test_a_torn_last_record_verifies_up_to_it_and_reopening_moves_it_aside(tmp_path: Path, torn: bytes) -> None:
    with AuditLog(tmp_path, max_bytes=800, fsync=False) as log:
        fill(log, 8)
        head = log.head
    complete = all_lines(tmp_path)
    newest = log_files(tmp_path)[-1]
    size = newest.stat().st_size
    with newest.open("ab") as f:
        f.write(torn)
    result = verify(tmp_path)
    assert result.ok and result.last_seq == 8 and result.head_hash == head[1]
    assert any(w.startswith(f"{newest.name}:{len(lines_of_prefix(newest, size)) + 1}: torn last record")
               for w in result.warnings)

    with AuditLog(tmp_path, max_bytes=800, fsync=False) as log:
        recovered_seq, _ = log.head
        log.append("daemon.started", {})
    assert recovered_seq == 9
    kept = list(tmp_path.glob("audit-torn-*.bin"))
    assert len(kept) == 1 and kept[0].read_bytes() == torn
    records = check_format(tmp_path)
    assert all_lines(tmp_path)[:8] == complete  # complete lines untouched
    assert records[8]["kind"] == "audit.recovered"
    assert records[8]["data"] == {"file": newest.name, "cut_bytes": len(torn), "at_offset": size,
                                  "kept_in": kept[0].name}
    result = verify(tmp_path)
    assert result.ok and not result.warnings and result.last_seq == 10


def lines_of_prefix(path: Path, size: int) -> list[bytes]:
    return path.read_bytes()[:size].split(b"\n")[:-1]


def test_more_damage_than_a_crash_leaves_is_refused_on_open(tmp_path: Path) -> None:
    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 4)
    path = tmp_path / "audit-000001.jsonl"
    with path.open("ab") as f:
        f.write(b"not json\n{also not")
    before = path.read_bytes()
    with pytest.raises(AuditError, match="more than one damaged line"):
        AuditLog(tmp_path, fsync=False)
    assert path.read_bytes() == before and not list(tmp_path.glob("audit-torn-*"))
    result = verify(tmp_path)
    assert not result.ok and result.problem == "audit-000001.jsonl:5 (after seq 4): not valid JSON: edited?"


def test_a_torn_line_in_an_older_file_is_broken(tmp_path: Path) -> None:
    with AuditLog(tmp_path, max_bytes=500, fsync=False) as log:
        fill(log, 10)
    first = tmp_path / "audit-000001.jsonl"
    first.write_bytes(first.read_bytes()[:-1])
    result = verify(tmp_path)
    assert not result.ok and result.problem_file == "audit-000001.jsonl"
    assert "no newline, but a newer file follows" in (result.problem or "")


# -- tamper detection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    directory: Path
    head: tuple[int, str]
    positions: list[tuple[Path, int]]  # (file, 0-based line index) of every record, in chain order


@contextmanager
def built_log(datas: list[dict[str, Any]], max_bytes: int) -> Iterator[Built]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with AuditLog(directory, max_bytes=max_bytes, fsync=False) as log:
            for i, data in enumerate(datas):
                log.append(f"kind.k{i % 3}", data)
            head = log.head
        positions = [(path, i) for path in log_files(directory) for i in range(len(lines_of(path)))]
        assert verify(directory, expected_head=head).ok
        yield Built(directory, head, positions)


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def where(built: Built, index: int) -> tuple[str, int]:
    """(file name, 1-based line) that verify must name for record `index` (in the layout before tampering)."""
    path, i = built.positions[index]
    return path.name, i + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
datas = st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=1, max_size=18)
sizes = st.sampled_from([350, 600, 1500, 1 << 20])


def same_link(new: bytes, old: bytes) -> bool:
    """Whether `new` is still a well-formed canonical record with the old seq and prev (so only the next
    record's prev, or the published head, can show the edit)."""
    try:
        record = json.loads(new.decode("utf-8"))
        before = json.loads(old)
        return (isinstance(record, dict) and set(record) == set(before) and canonical(record) == new
                and type(record["seq"]) is int and record["seq"] == before["seq"] and record["prev"] == before["prev"]
                and isinstance(record["t"], str) and isinstance(record["kind"], str)
                and isinstance(record["data"], dict))
    except (UnicodeDecodeError, ValueError):
        return False


@settings(max_examples=100)
@given(datas, sizes, st.data())
def test_editing_any_byte_of_any_line_is_detected(records: list[dict[str, Any]], max_bytes: int,
                                                  data: st.DataObject) -> None:
    with built_log(records, max_bytes) as built:
        index = data.draw(st.integers(0, len(built.positions) - 1), label="record")
        path, i = built.positions[index]
        lines = lines_of(path)
        old = lines[i]
        at = data.draw(st.integers(0, len(old) - 1), label="byte")
        value = data.draw(st.integers(0, 255).filter(lambda b: b != old[at]), label="value")
        lines[i] = old[:at] + bytes([value]) + old[at + 1:]
        rewrite(path, lines)
        result = verify(built.directory, expected_head=built.head)
        assert not result.ok
        last = index == len(built.positions) - 1
        expected = where(built, index + 1) if same_link(lines[i], old) and not last else where(built, index)
        assert (result.problem_file, result.problem_line) == expected, result.problem
        assert result.problem and re.match(rf"{expected[0]}:{expected[1]}[ :]", result.problem)


@settings(max_examples=100)
@given(datas, sizes, st.data())
def test_deleting_any_line_is_detected(records: list[dict[str, Any]], max_bytes: int, data: st.DataObject) -> None:
    with built_log(records, max_bytes) as built:
        index = data.draw(st.integers(0, len(built.positions) - 1), label="record")
        path, i = built.positions[index]
        lines = lines_of(path)
        del lines[i]
        rewrite(path, lines)
        result = verify(built.directory, expected_head=built.head)
        assert not result.ok
        if i < len(lines) or index == len(built.positions) - 1:
            expected = where(built, index)  # the line that moved up into its place, or the missing tail
        else:
            expected = where(built, index + 1)  # the next file's first record
        assert (result.problem_file, result.problem_line) == expected, result.problem
        assert result.problem_seq == index + 1 + (0 if index == len(built.positions) - 1 else 1)


@settings(max_examples=100)
@given(datas.filter(lambda d: len(d) >= 2), sizes, st.data())
def test_swapping_any_two_lines_is_detected(records: list[dict[str, Any]], max_bytes: int,
                                            data: st.DataObject) -> None:
    with built_log(records, max_bytes) as built:
        first, second = sorted(data.draw(st.lists(st.integers(0, len(built.positions) - 1), min_size=2, max_size=2,
                                                  unique=True), label="records"))
        (path_a, i), (path_b, j) = built.positions[first], built.positions[second]
        lines_a, lines_b = lines_of(path_a), lines_of(path_b)
        if path_a == path_b:
            lines_a[i], lines_a[j] = lines_a[j], lines_a[i]
            rewrite(path_a, lines_a)
        else:
            lines_a[i], lines_b[j] = lines_b[j], lines_a[i]
            rewrite(path_a, lines_a)
            rewrite(path_b, lines_b)
        result = verify(built.directory)  # no published head needed: the chain itself shows it
        assert not result.ok
        assert (result.problem_file, result.problem_line, result.problem_seq) == (*where(built, first), second + 1)


@settings(max_examples=30)
@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=8, max_size=16), st.data())
def test_deleting_a_middle_file_is_detected(records: list[dict[str, Any]], data: st.DataObject) -> None:
    with built_log(records, 400) as built:
        files = log_files(built.directory)
        assert len(files) >= 3
        k = data.draw(st.integers(1, len(files) - 2), label="file")
        files[k].unlink()
        result = verify(built.directory)
        assert not result.ok
        assert (result.problem_file, result.problem_line) == (files[k + 1].name, 1)
        assert f"{files[k].name} missing before this file: removed?" in (result.problem or "")


@settings(max_examples=50)
@given(datas, sizes, st.data())
def test_a_crash_mid_write_verifies_up_to_the_last_complete_record(records: list[dict[str, Any]], max_bytes: int,
                                                                    data: st.DataObject) -> None:
    with built_log(records, max_bytes) as built:
        path, i = built.positions[-1]
        last_line = lines_of(path)[i]
        keep = data.draw(st.integers(1, len(last_line)), label="bytes of the last record that reached the disk")
        content = path.read_bytes()
        path.write_bytes(content[: len(content) - len(last_line) - 1 + keep])
        n = len(built.positions)
        result = verify(built.directory)
        assert result.ok and result.last_seq == (n - 1 if n > 1 else None) and result.records == n - 1
        assert any(f"{path.name}:{i + 1}: torn last record ({keep} bytes" in w for w in result.warnings)
        assert not verify(built.directory, expected_head=built.head).ok  # upstream sees the lost record
        with AuditLog(built.directory, max_bytes=max_bytes, fsync=False) as log:
            assert log.head[0] == n  # n - 1 complete records + audit.recovered
        (kept,) = built.directory.glob("audit-torn-*.bin")
        assert kept.read_bytes() == last_line[:keep]
        result = verify(built.directory)
        assert result.ok and not result.warnings and result.last_seq == n


def test_a_non_canonical_line_is_detected_even_if_the_chain_holds(tmp_path: Path) -> None:
    """Re-encoding a line (spaces, key order) changes its hash; verify names the line itself."""
    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 3)
    path = tmp_path / "audit-000001.jsonl"
    lines = lines_of(path)
    lines[1] = json.dumps(json.loads(lines[1]), ensure_ascii=False).encode()
    rewrite(path, lines)
    result = verify(tmp_path)
    assert not result.ok and result.problem == ("audit-000001.jsonl:2 (after seq 1): not in canonical form "
                                                "(key order, spacing or escapes differ): edited?")


def test_the_published_head_catches_a_cut_tail_and_an_edited_head(tmp_path: Path) -> None:
    with AuditLog(tmp_path, fsync=False) as log:
        fill(log, 5)
        head = log.head
    path = tmp_path / "audit-000001.jsonl"
    lines = lines_of(path)
    rewrite(path, lines[:-1])
    assert verify(tmp_path).ok  # a shorter chain is still a chain ...
    result = verify(tmp_path, expected_head=head)  # ... but not the one published
    assert not result.ok
    assert result.problem == ("audit-000001.jsonl:5 (seq 5): the chain ends at seq 4, but the published head is "
                              "seq 5: records after it removed?")
    record = json.loads(lines[-1])
    record["data"]["kw"] = 0.0
    rewrite(path, [*lines[:-1], canonical(record)])
    result = verify(tmp_path, expected_head=head)
    assert not result.ok and result.problem_line == 5 and "differs from the published head" in (result.problem or "")
    assert verify(tmp_path, expected_head=(3, sha(lines[2]))).ok  # an older published head is a prefix


# -- the command ----------------------------------------------------------------------------------


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with AuditLog(state / "audit", max_bytes=600, fsync=False) as log:
        fill(log, 12)
        seq, digest = log.head
    assert cli.main(["audit", "verify", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"{state / 'audit'}: ok: chain intact, 12 records (seq 1..12), head 12:{digest}"
    assert cli.main(["audit", "verify", str(state / "audit"), "--head", f"{seq}:{digest.upper()}"]) == 0
    assert "chain intact and the published head" in capsys.readouterr().out

    path = state / "audit" / "audit-000002.jsonl"
    lines = lines_of(path)
    first_seq = json.loads(lines[0])["seq"]
    del lines[0]
    rewrite(path, lines)
    assert cli.main(["audit", "verify", str(state)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"BROKEN: audit-000002.jsonl:1 (seq {first_seq + 1}): seq {first_seq + 1} follows seq "
                      f"{first_seq - 1}: 1 record missing: removed?")
    assert printed[1] == (f"{state / 'audit'}: broken: {first_seq - 1} records (seq 1..{first_seq - 1}) verified "
                          "before the first broken record")


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("none", [], "does not exist"),
    ("empty", [], "holds no audit log (no audit-NNNNNN.jsonl files), and"),
    ("file", [], "is not a folder"),
    ("empty-audit", [], "audit holds no audit log"),
    ("log", ["--head", "12:abc"], "must be SEQ:SHA256"),
    ("log", ["--head", f"0:{'a' * 64}"], "must be SEQ:SHA256"),
])
def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, args: list[str],
                                 message: str) -> None:
    target = tmp_path / "target"
    if setup == "empty":
        target.mkdir()
    elif setup == "file":
        target.write_text("x")
    elif setup == "empty-audit":
        (target / "audit").mkdir(parents=True)
    elif setup == "log":
        with AuditLog(target, fsync=False) as log:
            fill(log, 2)
    assert cli.main(["audit", "verify", str(target), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    if setup != "log":
        with pytest.raises(AuditPathError):
            verify(target)


def test_cli_without_a_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["audit", "verify"])
    assert exc.value.code == 2
    assert "path" in capsys.readouterr().err
