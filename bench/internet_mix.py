#!/usr/bin/env python3
"""pacswatch against nmap's dicom-ping on loopback endpoints that behave like the internet.

    python bench/internet_mix.py [--endpoints 10000] [--concurrency 4000] [--equal 1000]

bench/dicom_vs_nmap.py measures a fleet where every peer answers alike, its easiest case.
Real scans meet many products, silent hosts, refusals and round trips of 20-300 ms. This
benchmark draws such a mix from a seed (MIX below), serves it with bench/responder.c (one
profile and one reply delay per endpoint, held back by the responder's delay queues, never
slept), and runs in the same run, on the same endpoints:

- pacswatch's default full probe (store included) at --concurrency, on uvloop (other
  --variants of dicom_vs_nmap.py's one-scan ones);
- nmap -sT --script dicom-ping, tuned (parallelism and one hostgroup, as in dicom_vs_nmap.py) at
  --concurrency, with -T5 and with -T4;
- pacswatch's default and nmap tuned (-T5) again, both at --equal parallelism.

Silent endpoints cost each tool a timeout, so both get the same one: pacswatch `--timeout T`
waits 2T for an association answer (probes/base.py Timeouts.scaled), and nmap gets
`--script-timeout 2T` (NSE sockets otherwise wait 30 s).

For each run: wall s, endpoints/s, CPU s per 1,000 endpoints (the tool's process tree), peak
RSS, the responder's CPU, and completeness: the endpoints whose facts are right. For pacswatch
that is the status and, where the peer answered, the association (accepted, version name,
accepted contexts, promiscuity, called AE found, reject reason), C-ECHO and the C-FIND facts
(allowed, studies, patients) the mix gave that endpoint; for nmap, whether dicom-ping reported
the endpoint as DICOM exactly where an A-ASSOCIATE-AC or -RJ (or its header) came back.
Only loopback (127.0.0.0/8) is ever bound or scanned; the results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pacswatch.dicom import uids
from pacswatch.lab.fast import raise_nofile_limit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c_responder import CResponder  # beside this file
from dicom_vs_nmap import (
    NMAP_PROFILES,
    RESULTS,
    VARIANTS,
    Run,
    check_nmap_command,
    compile_pacswatch,
    layout,
    machine_info,
    measure,
    nmap_reported,
    pacswatch_command,
    pacswatch_scan_flags,
    require_loopback,
    settle,
    source_state,
)


@dataclass(frozen=True)
class Profile:
    """What pacswatch must report for one of responder.c's PROFILES (kept in step with its table)."""

    status: str
    version_name: str | None = None
    classes: frozenset[str] = frozenset()  # the kinds of abstract syntax it accepts
    called_ae_found: str | None = None
    reject_reason: str | None = None
    counts: bool = False  # its universal C-FIND matches are drawn per endpoint
    nmap_dicom: bool = False  # dicom-ping sees an A-ASSOCIATE-AC or -RJ type byte
    answers: bool = True  # says something to an A-ASSOCIATE-RQ (not silent, not a closed port)


QR = frozenset({"verification", "find", "move", "get", "storage"})
PROFILES = {
    "orthanc": Profile("success", "OFFIS_DCMTK_369", QR, counts=True, nmap_dicom=True),
    "dcmtk-storescp": Profile("success", "OFFIS_DCMTK_368", frozenset({"verification", "storage"}), nmap_dicom=True),
    "dcm4chee": Profile("success", "dcm4che-5.31.0", QR | {"worklist"}, called_ae_found="DCM4CHEE", counts=True,
                        nmap_dicom=True),
    "pynetdicom-echo": Profile("success", "PYNETDICOM_202", frozenset({"verification"}), nmap_dicom=True),
    "conquest": Profile("success", "1.5.0c", QR | {"worklist", "control"}, counts=True, nmap_dicom=True),
    "reject-called": Profile("rejected", reject_reason="called-ae-not-recognized", nmap_dicom=True),
    "reject-calling": Profile("rejected", reject_reason="calling-ae-not-recognized", nmap_dicom=True),
    "reject-busy": Profile("rejected", reject_reason="local-limit-exceeded", nmap_dicom=True),
    "silent": Profile("io-timeout", answers=False),
    "closed": Profile("connection-refused", answers=False),
    "garbage": Profile("protocol-error"),
    "abort": Profile("rejected"),
    "drip": Profile("io-timeout", nmap_dicom=True),
}

# Shares of the mix, in percent: ~40% silent or closed, ~45% DICOM of five products, ~10%
# A-ASSOCIATE-RJ, ~5% hostile (garbage, A-ABORT, an A-ASSOCIATE-AC dripped a byte at a time).
MIX = {"silent": 32, "closed": 8,
       "orthanc": 12, "dcmtk-storescp": 10, "dcm4chee": 8, "pynetdicom-echo": 8, "conquest": 7,
       "reject-called": 4, "reject-calling": 4, "reject-busy": 2,
       "garbage": 2, "abort": 2, "drip": 1}
DELAY_MS = (20, 300)
DRIP_DELAY_MS = (200, 300)  # a byte per 200 ms or slower: the AC takes > 40 s, past any --timeout below 10


@dataclass(frozen=True)
class Endpoint:
    profile: str
    delay_ms: int
    studies: int
    patients: int


def draw_mix(keys: list[tuple[str, int]], seed: int) -> dict[tuple[str, int], Endpoint]:
    """Each endpoint's behaviour, from the seed alone."""
    rng = random.Random(seed)
    names, weights = list(MIX), list(MIX.values())
    mix = {}
    for key in keys:
        name = rng.choices(names, weights)[0]
        low, high = DRIP_DELAY_MS if name == "drip" else DELAY_MS
        studies = patients = 0
        if PROFILES[name].counts and rng.random() < 0.5:  # half of the archives hold something
            studies, patients = rng.randint(1, 40), rng.randint(1, 25)
        mix[key] = Endpoint(name, rng.randint(low, high), studies, patients)
    return mix


def context_kind(name: str) -> str:
    """The kind (as responder.c classifies it) of an accepted context's name in a record."""
    if name in ("verification", "control"):
        return name
    if name == "modality-worklist-find":
        return "worklist"
    if name.endswith("-storage"):
        return "storage"
    return name.rsplit("-", 1)[1]  # study-root-find -> find, patient-root-move -> move, ...


def expected_kinds(profile: Profile) -> set[str]:
    """The kinds among the contexts pacswatch proposes that `profile` accepts."""
    proposed = {context_kind(uids.NAMES[s]) for s in uids.PROBE_SYNTAXES} | {"control"}
    return proposed & profile.classes


def pacswatch_wrong(record: dict, end: Endpoint) -> str | None:
    """Why the record is not what the mix gave this endpoint; None when it is right."""
    p = PROFILES[end.profile]
    if record["status"] != p.status:
        return f"status {record['status']}, not {p.status}"
    d = record.get("dicom") or {}
    a = d.get("association") or {}
    if end.profile == "abort":
        return None if a.get("accepted") is False and "A-ABORT" in (record.get("detail") or "") else "abort not seen"
    if p.reject_reason is not None:
        reason = (a.get("reject") or {}).get("reason")
        return None if reason == p.reject_reason else f"reject reason {reason}"
    if p.status != "success":
        return None
    kinds = {context_kind(c) for c in a.get("accepted_contexts", [])}
    find = d.get("find") or {}
    may_find = "find" in p.classes
    checks = {
        "accepted": a.get("accepted") is True,
        "version name": a.get("implementation_version_name") == p.version_name,
        "contexts": kinds == expected_kinds(p),
        "promiscuous": d.get("promiscuous") is ("control" in p.classes),
        "called AE found": d.get("called_ae_found") == p.called_ae_found,
        "echo": d.get("echo") is True,
        "find allowed": find.get("allowed") is (True if may_find else None),
        "studies": find.get("studies") == (end.studies if may_find else None),
        "patients": find.get("patients") == (end.patients if may_find else None),
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"wrong {', '.join(bad)}" if bad else None


def check_pacswatch_mix(path: Path, mix: dict[tuple[str, int], Endpoint]) -> tuple[int, dict]:
    right, answering_right, seen, wrong = 0, 0, set(), {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                key = (r["ip"], r["port"])
                if key not in mix or key in seen:
                    continue
                seen.add(key)
                why = pacswatch_wrong(r, mix[key])
                if why is None:
                    right += 1
                    answering_right += PROFILES[mix[key].profile].answers
                else:
                    examples = wrong.setdefault(mix[key].profile, [])
                    if len(examples) < 3:
                        examples.append(f"{key[0]}:{key[1]}: {why}")
    answering = sum(PROFILES[e.profile].answers for e in mix.values())
    return right, {"records": len(seen), "missing": len(mix) - len(seen), "answering": answering,
                   "answering_right": answering_right, "wrong_examples": wrong}


def check_nmap_mix(path: Path, mix: dict[tuple[str, int], Endpoint]) -> tuple[int, dict]:
    if not path.exists():
        return 0, {"error": "no output"}
    found, states, scripted = nmap_reported(path)
    should = {key for key, e in mix.items() if PROFILES[e.profile].nmap_dicom}
    right = len(mix) - len(found ^ should)  # reported where it should be, silent where not
    answering = {key for key, e in mix.items() if PROFILES[e.profile].answers}
    return right, {"port_states": states, "script_ran": scripted, "reported_dicom": len(found),
                   "missed": len(should - found), "false_reports": len(found - should),
                   "answering": len(answering), "answering_right": len(answering - (found ^ should))}


def print_table(runs: list[Run]) -> None:
    head = (f"{'tool':<10} {'variant':<16} {'conc':>5} {'wall s':>7} {'ep/s':>6} {'CPU s/1k':>8} {'peak MB':>8} "
            f"{'resp CPU s':>10} {'other CPU s':>11} {'right':>12} {'answering right':>16}")
    print(head)
    print("-" * len(head))
    for r in runs:
        right = f"{r.check.get('answering_right', 0)}/{r.check.get('answering', 0)}"
        print(f"{r.tool:<10} {r.variant:<16} {r.check.get('concurrency', 0):>5} {r.wall_s:>7.2f} {r.rate:>6.0f} "
              f"{1000 * r.cpu_s / r.endpoints:>8.3f} {max(r.maxrss_mb, r.sampled_peak_rss_mb):>8.1f} "
              f"{r.responder_cpu_s:>10.2f} {r.other_cpu_s:>11.2f} {f'{r.correct}/{r.endpoints}':>12} {right:>16}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4000,
                        help="each tool's fast setting: pacswatch --concurrency, nmap parallelism (default 4000)")
    parser.add_argument("--equal", type=int, default=1000, help="the equal parallelism of the second pair (0: none)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="pacswatch --timeout T; nmap --script-timeout 2T (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mix (default 1)")
    parser.add_argument("--variants", default="uvloop",
                        help="pacswatch variants at --concurrency, of dicom_vs_nmap.py's (one scan each)")
    parser.add_argument("--nmap-profiles", default="tuned,tuned-t4",
                        help="at --concurrency: tuned (-T5), tuned-t4 (-T4 with the same parallelism)")
    parser.add_argument("--base", default="127.78.0.0", help="first loopback address (default 127.78.0.0)")
    parser.add_argument("--responder-threads", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between runs, at least")
    parser.add_argument("--settle-max", type=float, default=65.0,
                        help="wait up to this long before each run while too many sockets are in TIME_WAIT")
    parser.add_argument("--settle-time-wait", type=int, default=1000,
                        help="before each run, wait (up to --settle-max) for fewer sockets than this in TIME_WAIT "
                             "(default 1000): a run's connects cost more CPU after another run's 16-19k")
    args = parser.parse_args(argv)

    require_loopback([args.base])
    single = [v for v, (_, processes, _) in VARIANTS.items() if processes == 1]  # one scan each
    for v in args.variants.split(","):
        if v and v not in single:
            raise SystemExit(f"unknown variant {v!r}: one of {', '.join(single)}")
    for v in args.nmap_profiles.split(","):
        if v and v not in ("tuned", "tuned-t4"):
            raise SystemExit(f"unknown nmap profile {v!r}")
    if shutil.which("nmap") is None:
        raise SystemExit("nmap is not installed")
    kind = "nmap-ports" if os.geteuid() == 0 else "grid"  # binding port 104 needs root
    nofile = raise_nofile_limit()  # the children (pacswatch, nmap) inherit the raised soft limit
    compile_pacswatch()
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / f"internet_mix-{stamp}"
    work.mkdir()

    addresses, ports = layout(kind, args.endpoints, args.base)
    targets = work / "targets.txt"
    targets.write_text("".join(a + "\n" for a in addresses))
    require_loopback(targets.read_text().split())
    mix = draw_mix([(a, p) for a in addresses for p in ports], args.seed)
    n = len(mix)
    shares = {name: sum(e.profile == name for e in mix.values()) for name in PROFILES}
    print(f"{n} endpoints: {len(addresses)} addresses {addresses[0]}..{addresses[-1]} x ports {ports}, seed {args.seed}, "
          f"nofile {nofile}, {os.cpu_count()} CPUs\nmix: {shares}", flush=True)

    behaviour = {key: f"{e.profile} {e.delay_ms} {e.studies} {e.patients}" for key, e in mix.items()
                 if e.profile != "closed"}
    slow = f"{2 * args.timeout:g}s"
    runs: list[Run] = []
    with CResponder(behaviour=behaviour, threads=args.responder_threads, backlog=4096) as responder:
        if len(responder.endpoints) != len(behaviour):
            raise SystemExit("the responder did not bind every endpoint")
        plan = [("pacswatch", v, args.concurrency) for v in args.variants.split(",") if v]
        plan += [("nmap", p, args.concurrency) for p in args.nmap_profiles.split(",") if p]
        if args.equal:
            plan += [("pacswatch", "uvloop", args.equal), ("nmap", "tuned", args.equal)]
        flags = pacswatch_scan_flags()
        for number, (tool, variant, concurrency) in enumerate(plan):
            # Every run starts from the same socket table: each leaves 16-19k sockets in
            # TIME_WAIT for 60 s; with two runs' worth about (~40k), pacswatch's connects took
            # 0.6 s more system CPU per 10,000 endpoints (2.25 s against 1.62 s, 2026-12-06).
            settle(args.settle if number else 0.0, args.settle_max, args.settle_time_wait)
            name = f"{tool}-{variant}-c{concurrency}"
            if tool == "pacswatch":
                output = work / f"{name}.jsonl"
                cmd = pacswatch_command(variant, flags, targets, ports, concurrency, 100_000, output)
                cmd += ["--timeout", f"{args.timeout:g}"]
                run = Run(tool, variant, n, cmd)
                print(f"running: {' '.join(cmd)}", flush=True)
                measure(run, [cmd], responder.pids, work / name)
                run.correct, run.check = check_pacswatch_mix(output, mix)
            else:
                xml = work / f"{name}.xml"
                tuned = NMAP_PROFILES["tuned"](concurrency, len(addresses))
                if variant == "tuned-t4":  # the same parallelism under the -T4 template
                    tuned = ["-T4" if arg == "-T5" else arg for arg in tuned]
                cmd = ["nmap", "-sT", "-Pn", "-n", "-p", ",".join(map(str, ports)),
                       "--script", "dicom-ping" if kind == "nmap-ports" else "+dicom-ping",
                       *tuned, "--script-timeout", slow, "-iL", str(targets), "-oX", str(xml)]
                check_nmap_command(cmd, targets)
                run = Run(tool, variant, n, cmd)
                print(f"running: {' '.join(cmd)}", flush=True)
                measure(run, [cmd], responder.pids, work / name)
                run.correct, run.check = check_nmap_mix(xml, mix)
            run.check["concurrency"] = concurrency
            print(f"  {run.wall_s:.2f} s, {run.rate:.0f} endpoints/s, rc {run.returncode}, {run.correct}/{n} right, "
                  f"{json.dumps({k: v for k, v in run.check.items() if k != 'concurrency'})}", flush=True)
            runs.append(run)

    print()
    print_table(runs)
    result = {"benchmark": "internet_mix", "when": stamp, "machine": machine_info(), "pacswatch": source_state(),
              "settings": {"endpoints": n, "layout": kind, "ports": ports, "seed": args.seed, "mix": MIX,
                           "shares": shares, "delay_ms": DELAY_MS, "timeout": args.timeout,
                           "nmap_script_timeout": slow, "concurrency": args.concurrency, "equal": args.equal},
              "runs": [r.summary() for r in runs], "work_dir": str(work)}
    out = RESULTS / f"internet_mix-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out}")
    # Exit 1 when pacswatch got an answering endpoint wrong (nmap's misses are its own result).
    return 0 if all(r.check["answering_right"] == r.check["answering"] for r in runs if r.tool == "pacswatch") else 1


if __name__ == "__main__":
    sys.exit(main())
