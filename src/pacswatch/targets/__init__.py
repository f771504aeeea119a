"""Targets: what to scan, what never to scan, and in which order.

    parse_targets(["192.0.2.0/24", "pacs.example.org:4242", "@more.txt"]) -> TargetSet
    Blocklist.default().with_file("opt-out.txt"), Scope.from_file("authorised.txt")
    ScanPlan(targets, DEFAULT_DICOM_PORTS, seed, blocklist, scope) -> PlannedEndpoint, ...
"""

from pacswatch.targets.blocklist import (
    DEFAULT_BLOCKS,
    BlockEntry,
    Blocklist,
    Scope,
    load_exclude_file,
)
from pacswatch.targets.parse import (
    DEFAULT_MAX_ADDRESSES,
    Resolver,
    parse_address_range,
    parse_spec,
    parse_targets,
    system_resolver,
)
from pacswatch.targets.permutation import Permutation
from pacswatch.targets.plan import ListPlan, PlannedEndpoint, ScanPlan
from pacswatch.targets.ports import (
    DEFAULT_DICOM_PORTS,
    PortError,
    parse_port,
    parse_ports,
)
from pacswatch.targets.specfile import (
    SpecLine,
    TargetError,
    TargetProblem,
    read_spec_file,
)
from pacswatch.targets.targetset import Endpoint, TargetSet

__all__ = [
    "DEFAULT_BLOCKS",
    "DEFAULT_DICOM_PORTS",
    "DEFAULT_MAX_ADDRESSES",
    "BlockEntry",
    "Blocklist",
    "Endpoint",
    "ListPlan",
    "Permutation",
    "PlannedEndpoint",
    "PortError",
    "Resolver",
    "ScanPlan",
    "Scope",
    "SpecLine",
    "TargetError",
    "TargetProblem",
    "TargetSet",
    "load_exclude_file",
    "parse_address_range",
    "parse_port",
    "parse_ports",
    "parse_spec",
    "parse_targets",
    "read_spec_file",
    "system_resolver",
]
