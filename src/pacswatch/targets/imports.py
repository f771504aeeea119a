"""Import the open ports found by a SYN sweep elsewhere (masscan, ZMap) as pinned endpoints.

A user who ran masscan or ZMap over a large range probes only what answered: each open
(address, port) becomes a pinned endpoint of the plan, and still passes the blocklist and the
scope like any other target.

    masscan -oJ  a JSON array of {"ip", "ports": [{"port", "proto", "status"}]} objects; older
                 versions leave a trailing comma before "]" and a {"finished": 1} object, so
                 each object is also read line by line when the whole does not parse.
    masscan -oL  "open tcp 104 192.0.2.7 1700000000" lines, '#' comments.
    ZMap CSV     a header of field names (saddr, sport, success, classification, ...), or bare
                 addresses (ZMap's default output) with the port ZMap scanned given separately.

Every bad line is reported at once (TargetError), as for target files.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from pacswatch.targets.parse import canonical_ip
from pacswatch.targets.ports import parse_port
from pacswatch.targets.specfile import TargetError, TargetProblem
from pacswatch.targets.targetset import Endpoint, TargetSet

_TRAILING_COMMA = re.compile(r",\s*\]\s*\Z")
_FINISHED = re.compile(r"\{\s*\"?finished\"?\s*:\s*\d+\s*\}\Z")  # old masscan: {finished: 1}, not JSON
_TRUE = {"1", "true", "t", "yes"}


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TargetError([TargetProblem(str(path), None, "", f"cannot read: {reason}")]) from exc


def _endpoint(ip_text: str, port: object) -> Endpoint:
    ip = canonical_ip(ip_address(str(ip_text).strip()))  # ::ffff:192.0.2.7 is 192.0.2.7, as in targets
    return Endpoint(ip, parse_port(str(port)))


def _json(text: str) -> object:
    """json.loads, with nesting too deep for the parser as a JSONDecodeError like any other bad
    JSON (Python's parser recurses: '[' * 100000 is a RecursionError, not a decode error)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:20], 0) from None


def read_masscan_json(path: str | Path) -> list[Endpoint]:
    text = _read(path)
    try:
        entries = _json(_TRAILING_COMMA.sub("]", text.strip()) or "[]")
        # A whole array: its entries are named by position (1-based), as there are no lines.
        listed = entries if isinstance(entries, list) else [entries]
        numbered = [(TargetProblem(f"{path} entry {i}", None, "", ""), e) for i, e in enumerate(listed, start=1)]
    except json.JSONDecodeError:
        numbered = []
        problems = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip().strip(",").strip()
            if line in ("", "[", "]") or _FINISHED.match(line):
                continue
            try:
                numbered.append((TargetProblem(str(path), number, "", ""), _json(line)))
            except json.JSONDecodeError as exc:
                problems.append(TargetProblem(str(path), number, line[:80], f"not a masscan JSON object: {exc.msg}"))
        if problems:
            # the problems name each bad line; the whole-file JSON error is not their cause
            raise TargetError(problems) from None
    out, problems = [], []
    for where, entry in numbered:
        if not isinstance(entry, dict) or "ip" not in entry:
            continue  # {"finished": 1} and other bookkeeping objects
        try:
            out.extend(_masscan_entry(entry))
        except (TypeError, ValueError) as exc:
            shown = json.dumps(entry)[:80]
            problems.append(TargetProblem(where.source, where.line, shown, str(exc)))
    if problems:
        raise TargetError(problems)
    return out


def _masscan_entry(entry: dict[str, Any]) -> list[Endpoint]:
    """The open TCP ports of one masscan object; TypeError or ValueError naming what is wrong.

    The file comes from another program (or another person): every field is checked for its
    type, so an odd one is a sentence naming the entry, not a traceback."""
    if not isinstance(entry["ip"], str):
        raise TypeError(f"'ip' is {json.dumps(entry['ip'])}, not an address in quotes")
    ports = entry.get("ports")
    if ports is None:
        return []
    if not isinstance(ports, list):
        raise TypeError(f"'ports' is {json.dumps(ports)[:40]}, not a list of {{\"port\": N, ...}} objects")
    out = []
    for item in ports:
        if not isinstance(item, dict):
            raise TypeError(f"a 'ports' item is {json.dumps(item)[:40]}, not a {{\"port\": N, ...}} object")
        # Banner entries ("service" instead of "status") repeat an open port: skip them.
        if item.get("status") != "open" or item.get("proto", "tcp") != "tcp":
            continue
        port = item.get("port")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"'port' is {json.dumps(port)[:40]}, not a number from 1 to 65535")
        out.append(_endpoint(entry["ip"], port))
    return out


def read_masscan_list(path: str | Path) -> list[Endpoint]:
    out, problems = [], []
    for number, raw in enumerate(_read(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] != "open":
            continue  # banner lines repeat an open port
        if len(fields) < 4 or fields[1] != "tcp":
            if len(fields) < 4:
                problems.append(TargetProblem(str(path), number, line, "expected 'open tcp PORT ADDRESS [TIME]'"))
            continue
        try:
            out.append(_endpoint(fields[3], fields[2]))
        except ValueError as exc:
            problems.append(TargetProblem(str(path), number, line, str(exc)))
    if problems:
        raise TargetError(problems)
    return out


def read_masscan(path: str | Path) -> list[Endpoint]:
    """masscan -oJ or -oL output, told apart by the first character that is not blank."""
    head = _read(path).lstrip()[:1]
    return read_masscan_json(path) if head in ("[", "{") else read_masscan_list(path)


def read_zmap_csv(path: str | Path, port: int | None = None) -> list[Endpoint]:
    """ZMap CSV: with a header, `saddr` (or `ip`) and `sport` (the probed port answers from it)
    columns, keeping rows whose `success` is true and whose `classification` is `synack` when
    those columns exist; without one, one address per line on `port`."""
    text = _read(path)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.startswith("#")]
    if not lines:
        return []
    out, problems = [], []
    try:
        header = [h.strip().lower() for h in _csv_line(lines[0][1])]
    except csv.Error as exc:
        raise TargetError([TargetProblem(str(path), lines[0][0], lines[0][1][:80], f"not a CSV line: {exc}")]) from None
    has_header = not _is_address(header[0])
    if (not has_header or "sport" not in header) and port is None:
        raise TargetError([TargetProblem(str(path), None, "", "no port column (sport) in this ZMap output: "
                                         "give the port ZMap scanned (--ports with one port)")])
    if not has_header:
        for number, line in lines:
            try:
                out.append(_endpoint(line.split(",")[0], port))
            except ValueError as exc:
                problems.append(TargetProblem(str(path), number, line.strip(), str(exc)))
    else:
        address = "saddr" if "saddr" in header else "ip" if "ip" in header else None
        if address is None:
            raise TargetError([TargetProblem(str(path), lines[0][0], lines[0][1], "no saddr column in the header")])
        for number, line in lines[1:]:
            # One line at a time, so that a bad line is named by its number and cannot run on
            # into the next (an unclosed quote), and a huge field is one problem, not a crash.
            try:
                row = dict(zip(header, _csv_line(line), strict=False))
            except csv.Error as exc:
                problems.append(TargetProblem(str(path), number, line.strip()[:80], f"not a CSV line: {exc}"))
                continue
            if "success" in row and str(row["success"]).strip().lower() not in _TRUE:
                continue
            if "classification" in row and row["classification"] and row["classification"].strip() != "synack":
                continue
            try:
                if row.get(address) is None or ("sport" in header and row.get("sport") is None):
                    raise ValueError(f"fewer fields than the header names ({len(row)} of {len(header)})")
                out.append(_endpoint(row[address], row["sport"] if "sport" in header else port))
            except ValueError as exc:
                problems.append(TargetProblem(str(path), number, line.strip()[:80], str(exc)))
    if problems:
        raise TargetError(problems)
    return out


def _csv_line(line: str) -> list[str]:
    """The fields of one CSV line; csv.Error for a bad one (a field over the csv module's
    131,072-character limit, a stray quote)."""
    return next(csv.reader([line], strict=True), [])


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


_NO_MASSCAN_PORT = ("no open TCP port in this masscan output (masscan -oJ lists one as "
                    '{"port": N, "proto": "tcp", "status": "open"}, -oL as "open tcp PORT ADDRESS")')
_NO_ZMAP_PORT = "no successful SYN-ACK row in this ZMap output"


def imported_targets(masscan: Iterable[str | Path] = (), zmap: Iterable[str | Path] = (),
                     zmap_port: int | None = None) -> TargetSet:
    """Pinned endpoints from every file (duplicates scanned once); all problems in one TargetError."""
    endpoints: list[Endpoint] = []
    problems: list[TargetProblem] = []
    for reader, paths, found in ((read_masscan, masscan, _NO_MASSCAN_PORT),
                                 (lambda p: read_zmap_csv(p, zmap_port), zmap, _NO_ZMAP_PORT)):
        for path in paths:
            try:
                read = reader(path)
            except TargetError as exc:
                problems.extend(exc.problems)
                continue
            if not read:  # like an empty @FILE: a scan of nothing is a mistake to name, not to run
                problems.append(TargetProblem(str(path), None, "", found))
            endpoints.extend(read)
    if problems:
        raise TargetError(problems)
    return TargetSet(pinned=endpoints)
