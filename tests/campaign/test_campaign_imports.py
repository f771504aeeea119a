"""masscan (-oJ, -oL) and ZMap (CSV) output as pinned endpoints."""

from __future__ import annotations

import pytest

from pacswatch.targets import TargetError
from pacswatch.targets.imports import imported_targets, read_masscan, read_zmap_csv

MASSCAN_JSON_OLD = """[
{   "ip": "127.0.0.5",   "timestamp": "1415312014", "ports": [ {"port": 104, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64} ] },
{   "ip": "127.0.0.6",   "timestamp": "1415312015", "ports": [ {"port": 4242, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64} ] },
{   "ip": "127.0.0.6",   "timestamp": "1415312016", "ports": [ {"port": 4242, "proto": "tcp", "service": {"name": "unknown", "banner": "x"} } ] },
{   "ip": "127.0.0.7",   "timestamp": "1415312016", "ports": [ {"port": 53, "proto": "udp", "status": "open"} ] },
{finished: 1}
]
"""

MASSCAN_JSON = """[
{"ip": "127.0.0.5", "timestamp": "1700000000", "ports": [{"port": 104, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64}]}
,
{"ip": "::1", "timestamp": "1700000001", "ports": [{"port": 11112, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64}]}
]
"""

MASSCAN_LIST = """#masscan
open tcp 104 127.0.0.5 1700000000
open tcp 11112 127.0.0.6 1700000001
banner tcp 11112 127.0.0.6 1700000002 unknown x
# end
"""


def endpoints(targets):
    return sorted(str(e) for e in targets)


def test_masscan_json_old_style_with_trailing_objects(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(MASSCAN_JSON_OLD)
    assert endpoints(read_masscan(path)) == ["127.0.0.5:104", "127.0.0.6:4242"]


def test_masscan_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(MASSCAN_JSON)
    assert endpoints(read_masscan(path)) == ["127.0.0.5:104", "[::1]:11112"]


def test_masscan_list(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text(MASSCAN_LIST)
    assert endpoints(read_masscan(path)) == ["127.0.0.5:104", "127.0.0.6:11112"]


def test_masscan_bad_lines_are_all_reported(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("open tcp 104 127.0.0.300 1\nopen tcp 70000 127.0.0.1 1\nopen tcp\n")
    with pytest.raises(TargetError) as info:
        read_masscan(path)
    assert [p.line for p in info.value.problems] == [1, 2, 3]


def test_zmap_with_header(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("saddr,sport,dport,classification,success,repeat\n127.0.0.8,104,40000,synack,1,0\n"
                    "127.0.0.9,104,40000,rst,0,0\n127.0.0.10,11112,40000,synack,true,0\n")
    assert endpoints(read_zmap_csv(path)) == ["127.0.0.10:11112", "127.0.0.8:104"]


def test_zmap_bare_addresses_need_the_port(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("127.0.0.8\n127.0.0.9\n")
    with pytest.raises(TargetError, match="port"):
        read_zmap_csv(path)
    assert endpoints(read_zmap_csv(path, 104)) == ["127.0.0.8:104", "127.0.0.9:104"]


def test_zmap_header_without_port_column(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("saddr\n127.0.0.8\n")
    assert endpoints(read_zmap_csv(path, 4242)) == ["127.0.0.8:4242"]


def test_imported_targets_dedups_across_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.csv"
    a.write_text(MASSCAN_LIST)
    b.write_text("saddr,sport\n127.0.0.5,104\n")
    targets = imported_targets([a], [b])
    assert endpoints(targets.pinned) == ["127.0.0.5:104", "127.0.0.6:11112"] and targets.size == 0


def test_unreadable_file(tmp_path):
    with pytest.raises(TargetError, match="cannot read"):
        imported_targets([tmp_path / "missing.json"])


@pytest.mark.parametrize("text, name", [
    ('[{"ip": "127.0.0.5", "ports": [{"port": "11112"}]}, {"ip": "127.0.0.6", "ports": null}]', "m.json"),
    ("# masscan\nbanner tcp 104 127.0.0.5 1700000000 http x\n", "m.txt"),
    ("saddr,sport,classification,success\n127.0.0.5,104,rst,0\n", "z.csv"),
])
def test_an_import_that_yields_no_open_port_is_an_error_not_an_empty_scan(tmp_path, text, name):
    """Entries without "status": "open", banner lines only, or only failed ZMap rows: nothing to
    scan. Named like an empty @FILE, not a scan of 0 endpoints that exits 0."""
    path = tmp_path / name
    path.write_text(text)
    kind = {"masscan": [path]} if name.startswith("m") else {"zmap": [path]}
    with pytest.raises(TargetError) as caught:
        imported_targets(**kind)
    assert str(path) in str(caught.value)
    assert "no open TCP port" in str(caught.value) or "no successful SYN-ACK" in str(caught.value)
