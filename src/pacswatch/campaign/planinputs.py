"""A distributed scan's plan: read once by the scan command, rebuilt from the database by its
workers.

The command reads the targets (@FILE lists and masscan/ZMap imports, names resolved), the
--exclude and --scope files once, and stores what it read with the scan (the `scan_inputs`
row, store/shards.py), beside the rescan policy its findings follow (--confirm-fixed-after
included) and who looks up owners when it ends. The command's own plan and every worker's are
built from that row and the opt-out list and scope in the database (`plan_from_inputs`): no
worker needs a file of the command's machine or resolves a name, so every machine walks the
same seeded permutation, and a file moved or deleted after the command started changes nothing.
A scan stored before these rows existed is rebuilt from its parameters (`stored_plan`).
"""

from __future__ import annotations

import json
from ipaddress import ip_address

from pacswatch.campaign.scanrun import plan_from_parameters
from pacswatch.campaign.scope import LiveBlocklist, campaign_scope
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.targets import Endpoint, ScanPlan, TargetSet
from pacswatch.targets.specfile import read_spec_text

def targets_text(targets: TargetSet) -> str:
    """The targets as resolved here, as JSON text: ranges, pinned endpoints, the names."""
    return json.dumps({
        "ranges": [[first.version, int(first), int(last)] for first, last in targets.ranges()],
        "pinned": [[str(e.ip), e.port, e.hostname] for e in targets.pinned],
        "names": [[version, value, list(names)] for (version, value), names in targets.hostnames.items()],
    }, separators=(",", ":"))


def targets_from_text(text: str) -> TargetSet:
    data = json.loads(text)
    return TargetSet([(int(v), int(a), int(b)) for v, a, b in data["ranges"]],
                     [Endpoint(ip_address(ip), int(port), host) for ip, port, host in data["pinned"]],
                     {(int(v), int(value)): names for v, value, names in data["names"]})


def read_inputs(parameters: dict, targets: TargetSet, policy: RescanPolicy, attribute: str | None) -> dict:
    """The scan_inputs values of a scan: its targets, and its --exclude and --scope files read now."""
    scope = parameters.get("scope")
    return {"targets": targets_text(targets),
            "exclude": [[path, read_spec_text(path)] for path in parameters.get("exclude") or ()],
            "scope": [scope, read_spec_text(scope)] if scope else None,
            "policy": policy.to_json(), "attribute": attribute}


def plan_from_inputs(repo, parameters: dict, inputs: dict) -> ScanPlan:
    """The plan of a scan from its stored inputs, under the opt-out list and scope in the
    database now (followed while it runs, as a local scan's)."""
    blocklist = LiveBlocklist(repo, exclude_texts=[(str(name), str(text)) for name, text in inputs["exclude"]])
    scope_text = (str(inputs["scope"][0]), str(inputs["scope"][1])) if inputs.get("scope") else None
    scope = campaign_scope(None, repo.scope_entries(), scope_text)
    return plan_from_parameters(parameters, blocklist, scope, targets_from_text(inputs["targets"]))


def stored_plan(repo, scan: dict) -> ScanPlan:
    """The plan of a stored distributed scan: from its inputs, else (a scan stored before they
    were kept) from its parameters and the files they name."""
    from pacswatch.campaign.commands import build_plan
    from pacswatch.store.shards import ShardStore

    inputs = ShardStore(repo.engine).inputs(scan["id"])
    if inputs is None:
        return build_plan(repo, scan["parameters"])
    return plan_from_inputs(repo, scan["parameters"], inputs)
