#!/usr/bin/env python3
"""The CPU floor of pacswatch's DICOM probe: the same bytes, sent by the cheapest possible client.

    python bench/floor.py [--endpoints 10000] [--concurrency 1000] [--repeat 3]

bench/dicom_vs_nmap.py measures pacswatch's full probe against nmap's dicom-ping. This script
asks what the same byte exchange costs when the client does nothing but replay it: a C program
(bench/floor_client.c: epoll, canned requests, PDU framing only) against the C responder
(bench/responder.c, via bench/c_responder.py), on loopback only (127.0.0.0/8).

Two modes, alternated `--repeat` times:
  full   the probe's six steps, with the exact bytes pacswatch's own encoders produce:
         A-ASSOCIATE-RQ, C-ECHO, the permission C-FIND (random Study Instance UID), the counting
         C-FINDs on Study Root and Patient Root, A-RELEASE-RQ; close after A-RELEASE-RP.
  assoc  the A-ASSOCIATE-RQ alone, close after the A-ASSOCIATE-AC (like nmap's dicom-ping).

Each run of the client is a child process: its user and sys CPU come from os.wait4's rusage, the
responder's from its /proc times (psutil) before and after. Per endpoint: client CPU, responder
CPU, their total, and the ceiling it implies on this machine, os.cpu_count() / total CPU per
endpoint, in endpoints/s. "other" is the machine's busy CPU meanwhile beyond both (kernel
threads such as ksoftirqd, anything else running): not in the total, shown so that it is seen.

Before the runs, a few endpoints are walked through both exchanges with a plain Python socket, to
check that every step is answered by exactly one PDU (the client's framing relies on it).

Writes bench/results/floor-<stamp>.json (and a folder beside it with the messages, targets and
the client's output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from pacswatch.dicom import uids
from pacswatch.dicom.association import encode_message
from pacswatch.dicom.dimse import c_echo_rq, c_find_rq, decode_command
from pacswatch.dicom.identifiers import patient_query, study_query
from pacswatch.dicom.pdu import AAssociateAC, AReleaseRQ, PDataTF, decode_pdu, encode_pdu
from pacswatch.identity import Identity
from pacswatch.lab.fast import loopback_addresses, raise_nofile_limit
from pacswatch.probes.dicom.probe import random_ae, random_uid
from pacswatch.probes.dicom.request import RequestTemplate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from c_responder import CResponder, build, build_c, check_loopback  # noqa: E402
from dicom_vs_nmap import busy_cpu_s, responder_cpu, settle, time_wait_sockets  # noqa: E402

RESULTS = HERE / "results"
CLIENT_SOURCE = HERE / "floor_client.c"
CLIENT_CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE"]
PORTS = (11112, 4242, 2761, 2345, 20000)  # as the benchmark's layout, with 20000 for 104 (no root)
MAX_PDU = 16384
MODES = ("full", "assoc")
STEP_NAMES = ("A-ASSOCIATE-RQ", "C-ECHO-RQ", "C-FIND-RQ check", "C-FIND-RQ study count",
              "C-FIND-RQ patient count", "A-RELEASE-RQ")


# ------------------------------------------------------------------------------ building


def build_client(out_dir: Path | None = None) -> Path:
    """Compile floor_client.c (again when the source is newer) and return the binary's path."""
    return build_c(CLIENT_SOURCE, out_dir, CLIENT_CFLAGS)


# ------------------------------------------------------------------------------ the bytes


def probe_messages() -> list[bytes]:
    """The six requests of pacswatch's full probe, from pacswatch's own encoders."""
    control_uid = random_uid()
    called_ae = random_ae()
    message0 = RequestTemplate(Identity(), MAX_PDU, control_uid).build(called_ae)[1]
    context = {uid: 2 * i + 1 for i, uid in enumerate(uids.PROBE_SYNTAXES)}  # as proposed_contexts()
    study, patient = context[uids.STUDY_ROOT_FIND], context[uids.PATIENT_ROOT_FIND]
    return [
        message0,
        encode_message(context[uids.VERIFICATION], c_echo_rq(1), None, MAX_PDU),
        encode_message(study, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(random_uid()), MAX_PDU),
        encode_message(study, c_find_rq(5, uids.STUDY_ROOT_FIND), study_query(""), MAX_PDU),
        encode_message(patient, c_find_rq(7, uids.PATIENT_ROOT_FIND), patient_query(), MAX_PDU),
        encode_pdu(AReleaseRQ()),
    ]


def write_messages(path: Path, messages: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(m)) + m for m in messages))


# ------------------------------------------------------------------------------ the check


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def _describe(raw: bytes) -> str:
    pdu = decode_pdu(raw)
    if isinstance(pdu, AAssociateAC):
        results = {}
        for ctx in pdu.contexts:
            results[ctx.result] = results.get(ctx.result, 0) + 1
        return f"A-ASSOCIATE-AC results {dict(sorted(results.items()))}"
    if isinstance(pdu, PDataTF):
        parts = []
        for pdv in pdu.pdvs:
            if pdv.is_command:
                cmd = decode_command(pdv.data)
                parts.append(f"ctx {pdv.context_id} cmd 0x{cmd.command_field:04x} status 0x{cmd.status:04x}")
            else:
                parts.append(f"ctx {pdv.context_id} data set {len(pdv.data)} bytes")
        return "P-DATA-TF " + "; ".join(parts)
    return type(pdu).__name__


def check_exchange(endpoint: tuple[str, int], messages: list[bytes], linger: float = 0.2) -> dict:
    """Walk one endpoint through `messages`: after each, one PDU must arrive, then nothing for
    `linger` seconds. Returns what came back, step by step."""
    ip, port = endpoint
    check_loopback(ip)
    steps = []
    ok = True
    with socket.create_connection((check_loopback(ip), port), timeout=5.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, message in enumerate(messages):
            sock.sendall(message)
            head = _read_exact(sock, 6)
            body = _read_exact(sock, struct.unpack(">I", head[2:6])[0])
            extra = b""
            while select.select([sock], [], [], linger)[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                extra += chunk
            steps.append({"step": STEP_NAMES[i], "answer": _describe(head + body), "extra_bytes": len(extra)})
            ok = ok and not extra
    return {"endpoint": f"{ip}:{port}", "ok": ok, "steps": steps}


# ------------------------------------------------------------------------------ measuring


def run_client(binary: Path, messages: Path, targets: Path, concurrency: int, responder_pid: int,
               logs: Path, n: int) -> dict:
    before = responder_cpu([responder_pid])
    busy_before = busy_cpu_s()
    load = os.getloadavg()[0]
    with open(logs.with_suffix(".stdout"), "wb") as out, open(logs.with_suffix(".stderr"), "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([str(binary), str(messages), str(targets), str(concurrency)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    responder_s = responder_cpu([responder_pid]) - before
    client_s = usage.ru_utime + usage.ru_stime
    other_s = max(0.0, busy_cpu_s() - busy_before - client_s - responder_s)
    stdout = logs.with_suffix(".stdout").read_text().split()
    stderr = logs.with_suffix(".stderr").read_text()
    summary = dict(zip(stdout[0::2], stdout[1::2]))
    done, ok = int(summary.get("done", 0)), int(summary.get("ok", 0))
    per = 1e6 / n
    total_us = (client_s + responder_s) * per
    return {
        "returncode": proc.returncode, "wall_s": wall, "client_wall_s": float(summary.get("wall_s", "nan")),
        "done": done, "ok": ok, "errors": int(summary.get("errors", 0)), "client_stderr": stderr.strip(),
        "endpoints_per_s": n / wall,
        "client_user_s": usage.ru_utime, "client_sys_s": usage.ru_stime, "client_maxrss_mb": usage.ru_maxrss / 1024,
        "responder_cpu_s": responder_s, "other_cpu_s": other_s, "loadavg_before": load,
        "client_user_us": usage.ru_utime * per, "client_sys_us": usage.ru_stime * per,
        "responder_us": responder_s * per, "total_us": total_us, "other_us": other_s * per,
        "ceiling_endpoints_per_s": (os.cpu_count() or 1) / (total_us * 1e-6) if total_us else None,
    }


def print_table(mode: str, runs: list[dict], n: int, concurrency: int) -> None:
    print(f"\nmode {mode}: {n} endpoints, concurrency {concurrency}, {os.cpu_count()} CPUs "
          f"(CPU in µs per endpoint)")
    head = (f"{'run':<7} {'wall s':>7} {'ep/s':>7} {'ok':>12} {'cli usr':>8} {'cli sys':>8} {'resp':>8} "
            f"{'total':>8} {'other':>8} {'ceiling ep/s':>13}")
    print(head)
    print("-" * len(head))

    def row(name: str, r: dict) -> None:
        print(f"{name:<7} {r['wall_s']:>7.2f} {r['endpoints_per_s']:>7.0f} {str(r['ok']) + '/' + str(n):>12} "
              f"{r['client_user_us']:>8.1f} {r['client_sys_us']:>8.1f} {r['responder_us']:>8.1f} "
              f"{r['total_us']:>8.1f} {r['other_us']:>8.1f} {r['ceiling_endpoints_per_s'] or 0:>13.0f}")

    for i, r in enumerate(runs):
        row(f"#{i + 1}", r)
    if len(runs) > 1:
        row("median", median_run(runs))


def median_run(runs: list[dict]) -> dict:
    keys = ("wall_s", "endpoints_per_s", "client_user_us", "client_sys_us", "responder_us", "total_us",
            "other_us", "ceiling_endpoints_per_s")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["ok"] = min(r["ok"] for r in runs)
    return out


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode, alternating")
    parser.add_argument("--modes", default="full,assoc", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--responder-threads", type=int, default=2, help="as the benchmark (default 2)")
    parser.add_argument("--base", default="127.78.0.0", help="first loopback address")
    parser.add_argument("--verify", type=int, default=5, help="endpoints checked step by step first (0: none)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between runs, at least")
    parser.add_argument("--settle-max", type=float, default=65.0,
                        help="wait up to this long between runs while over 20,000 sockets are in TIME_WAIT")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}")
    check_loopback(args.base)
    raise_nofile_limit()
    build()  # fail early, before anything is started, when the responder cannot be built
    client_binary = build_client()

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / f"floor-{stamp}"
    work.mkdir()

    ports = list(PORTS)
    addresses = [check_loopback(a) for a in loopback_addresses(math.ceil(args.endpoints / len(ports)), args.base)]
    endpoints = [(a, p) for a in addresses for p in ports]
    n = len(endpoints)
    targets = work / "targets.txt"
    targets.write_text("".join(f"{check_loopback(ip)} {port}\n" for ip, port in endpoints))
    for line in targets.read_text().splitlines():  # what the client reads: loopback only
        check_loopback(line.split()[0])

    messages = probe_messages()
    files = {"full": work / "messages-full.bin", "assoc": work / "messages-assoc.bin"}
    write_messages(files["full"], messages)
    write_messages(files["assoc"], messages[:1])
    sizes = [len(m) for m in messages]
    print(f"{n} endpoints: {len(addresses)} addresses {addresses[0]}..{addresses[-1]} x ports "
          f"{','.join(map(str, ports))}; concurrency {args.concurrency}; {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"request bytes per step: {sizes} (total {sum(sizes)})", flush=True)

    runs: dict[str, list[dict]] = {m: [] for m in modes}
    verification: list[dict] = []
    with CResponder(addresses, ports, threads=args.responder_threads, backlog=1024) as responder:
        if set(responder.endpoints) != set(endpoints):
            raise SystemExit(f"responder bound {len(responder.endpoints)} of {n} endpoints")
        pid = responder.pids[0]

        if args.verify:
            step = max(1, n // args.verify)
            for ep in endpoints[::step][: args.verify]:
                for mode in modes:
                    result = check_exchange(ep, messages if mode == "full" else messages[:1])
                    result["mode"] = mode
                    verification.append(result)
            bad = [v for v in verification if not v["ok"]]
            print(f"check: {len(verification) - len(bad)}/{len(verification)} exchanges got exactly one PDU per step",
                  flush=True)
            for s in verification[0]["steps"] if verification else []:
                print(f"  {s['step']:<24} -> {s['answer']}", flush=True)
            for v in bad:
                print(f"  NOT ONE PDU: {v['mode']} {v['endpoint']}: {v['steps']}", flush=True)
            settle(1.0, args.settle_max)

        plan = [(rep, mode) for rep in range(args.repeat) for mode in modes]
        for number, (rep, mode) in enumerate(plan):
            if number:
                settle(args.settle, args.settle_max)
            tw = time_wait_sockets()
            r = run_client(client_binary, files[mode], targets, args.concurrency, pid,
                           work / f"{mode}-r{rep}", n)
            r.update(mode=mode, rep=rep, time_wait_before=tw)
            runs[mode].append(r)
            print(f"{mode} ({rep + 1}/{args.repeat}): {r['wall_s']:.2f} s, {r['endpoints_per_s']:.0f} ep/s, "
                  f"ok {r['ok']}/{n}, client {r['client_user_us'] + r['client_sys_us']:.1f} µs/ep, "
                  f"responder {r['responder_us']:.1f} µs/ep, other {r['other_us']:.1f} µs/ep "
                  f"[{r['client_stderr'].replace(chr(10), '; ')}]", flush=True)
        responder_stderr = responder.stderr_text()

    for mode in modes:
        print_table(mode, runs[mode], n, args.concurrency)
    if responder_stderr:
        print(f"\nresponder stderr: {responder_stderr}")

    result = {
        "benchmark": "floor", "when": stamp,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "settings": {"endpoints": n, "addresses": len(addresses), "ports": ports, "concurrency": args.concurrency,
                     "repeat": args.repeat, "responder_threads": args.responder_threads, "max_pdu": MAX_PDU,
                     "request_bytes": dict(zip(STEP_NAMES, sizes))},
        "verification": verification,
        "runs": [r for m in modes for r in runs[m]],
        "median": {m: median_run(runs[m]) for m in modes if runs[m]},
        "work_dir": str(work),
    }
    out = args.out or RESULTS / f"floor-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out}")
    all_ok = all(r["ok"] == n and r["returncode"] == 0 for m in modes for r in runs[m])
    return 0 if all_ok and all(v["ok"] for v in verification) else 1


if __name__ == "__main__":
    sys.exit(main())
