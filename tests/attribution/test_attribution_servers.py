"""Attribution against real servers on loopback that the tests start: a DNS server (PTR, A), an
RDAP server (bootstrap + ip network + autnum) and a web server with security.txt. The resolver
and the RDAP bootstrap point at them; a guard fails any lookup or connection off loopback."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from pacswatch.attribution import facts as F
from pacswatch.attribution.asn import AsnTable
from pacswatch.attribution.attributor import AttributionConfig, Attributor
from pacswatch.attribution.cache import MemoryCache
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.local import LocalOwner
from pacswatch.attribution.rdap import RdapConfig
from pacswatch.campaign.scope import contact_check

from loopback_servers import rdap_autnum, rdap_network, violations

SECURITY_TXT = ("Contact: mailto:security@example.org\nContact: https://example.org/cert\n"
                "Expires: 2099-01-01T00:00:00Z\nPreferred-Languages: nl, en\n")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def world(dns_server, rdap_server, web_server) -> None:
    # 192.0.2.10: a confirmed name in example.org, whose domain publishes security.txt.
    dns_server.add_ptr("192.0.2.10", "pacs.radiology.example.org")
    dns_server.add_a("pacs.radiology.example.org", "192.0.2.10")
    dns_server.add_a("example.org", web_server.host)  # the domain's web site: our loopback server
    web_server.files["example.org"] = SECURITY_TXT
    # 192.0.2.20: a PTR whose forward name points elsewhere (not confirmed).
    dns_server.add_ptr("192.0.2.20", "pacs.example.org")
    dns_server.add_a("pacs.example.org", "198.51.100.7")
    # 198.51.100.0/24: no PTR at all.
    rdap_server.networks["192.0.2.0/24"] = rdap_network("192.0.2.0/24", "EXAMPLE-HOSP", handle="NET-192-0-2",
                                                        org="Example Hospital Network", abuse="abuse@example.net",
                                                        country="NL", origin_as=[64500])
    rdap_server.networks["198.51.100.0/24"] = rdap_network("198.51.100.0/24", "EXAMPLE-ISP", handle="NET-198",
                                                           tech="noc@example.com")
    rdap_server.autnums[64500] = rdap_autnum(64500, "EXAMPLE-AS", "Example Transit B.V.")


def config(dns_server, rdap_server, web_server, **rdap) -> AttributionConfig:
    return AttributionConfig(resolver=ResolverConfig((dns_server.nameserver,), timeout=1.0),
                             rdap=RdapConfig(bootstrap_url=rdap_server.bootstrap_url,
                                             min_interval=rdap.pop("min_interval", 0.0), **rdap),
                             security_txt_scheme="http", security_txt_port=web_server.port)


def run(coro):
    return asyncio.run(coro)


async def attribute(cfg, ips, **kwargs):
    async with Attributor(cfg, **kwargs) as attributor:
        return await attributor.attribute_many(ips), attributor


def test_full_attribution_over_real_servers(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    results, attributor = run(attribute(config(dns_server, rdap_server, web_server),
                                        ["192.0.2.10", "192.0.2.20", "198.51.100.5"]))
    a, facts = results["192.0.2.10"]
    ptr = F.of_kind(facts, F.PTR)[0]
    assert (ptr.value, ptr.detail["confirmed"], ptr.source) == ("pacs.radiology.example.org", True,
                                                               f"dns:{dns_server.nameserver}")
    assert a.owner_key == "domain:example.org" and a.contact.address == "security@example.org"
    assert a.contact.source == f"security.txt:http://example.org:{web_server.port}/.well-known/security.txt"
    assert a.escalation.address == "abuse@example.net" and a.language == "nl"
    # Every fact says where it came from and when.
    assert all(f.source and f.at.tzinfo is not None for f in facts)
    assert F.first_value(facts, F.ASN) == "64500" and F.first_value(facts, F.ASN_HOLDER) == "Example Transit B.V."
    # security.txt was asked of the domain, by name, on loopback: never of the exposed host itself.
    assert web_server.requests and all(host == "example.org" for host, _ in web_server.requests)
    assert ("radiology.example.org.", "A") in dns_server.queries  # the more specific domain was tried first

    a, facts = results["192.0.2.20"]
    assert F.of_kind(facts, F.PTR)[0].detail["confirmed"] is False
    assert a.contact.address == "abuse@example.net" and a.owner_key == "rdap:NET-192-0-2"

    a, facts = results["198.51.100.5"]
    assert not F.of_kind(facts, F.PTR)
    assert a.contact.address == "noc@example.com" and a.confidence == 0.5
    assert violations() == []


def test_local_table_beats_public_sources(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    local = [LocalOwner("192.0.2.0/25", "Example Hospital IT", ("it-security@example.org",), "nl", id=3)]
    results, _ = run(attribute(config(dns_server, rdap_server, web_server), ["192.0.2.10"], local=local))
    a, _facts = results["192.0.2.10"]
    assert a.owner_key == "local:3" and a.contact.address == "it-security@example.org"
    assert a.escalation.address == "abuse@example.net"


def test_cache_serves_until_expiry(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    clock, cache = Clock(), MemoryCache()
    cfg = config(dns_server, rdap_server, web_server)
    run(attribute(cfg, ["192.0.2.10"], cache=cache, clock=clock))
    dns_count, rdap_count = len(dns_server.queries), len(rdap_server.requests)
    run(attribute(cfg, ["192.0.2.10"], cache=cache, clock=clock))
    assert (len(dns_server.queries), len(rdap_server.requests)) == (dns_count, rdap_count)  # all from the cache
    clock.now += timedelta(days=2)  # DNS facts (1 day) expired, RDAP (7 days) not
    run(attribute(cfg, ["192.0.2.10"], cache=cache, clock=clock))
    assert len(dns_server.queries) > dns_count
    assert len(rdap_server.requests) == rdap_count
    clock.now += timedelta(days=8)
    run(attribute(cfg, ["192.0.2.10"], cache=cache, clock=clock))
    assert len(rdap_server.requests) > rdap_count


def test_rdap_requests_are_spaced_per_server_and_429_is_honoured(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    rdap_server.throttle = 1
    cfg = config(dns_server, rdap_server, web_server, min_interval=0.15)
    ips = ["192.0.2.30", "192.0.2.31", "192.0.2.32"]
    started = time.monotonic()
    results, attributor = run(attribute(cfg, ips))
    elapsed = time.monotonic() - started
    assert all(results[ip][0].contact.address == "abuse@example.net" for ip in ips)  # the 429 was retried
    rdap_paths = [p for _, p in rdap_server.requests if p.startswith("/rdap/") or p.startswith("/bootstrap/")]
    # bootstrap(s) + one 429 + 3 networks + 1 autnum, one at a time, 0.15 s apart
    assert len(rdap_paths) >= 5
    assert elapsed >= 0.15 * (len(rdap_paths) - 1) * 0.9
    assert sum(attributor.rdap.limiter.waited.values()) > 0


def test_the_rdap_bootstrap_is_fetched_once_for_addresses_attributed_at_once(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    ips = [f"192.0.2.{n}" for n in range(40, 48)]  # eight: the attributor's concurrency
    results, _attributor = run(attribute(config(dns_server, rdap_server, web_server), ips))
    assert all(results[ip][0].contact.address == "abuse@example.net" for ip in ips)
    assert [p for _, p in rdap_server.requests if p.startswith("/bootstrap/ipv4")] == ["/bootstrap/ipv4.json"]


def test_silent_dns_and_missing_rdap_are_recorded_not_fatal(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    dns_server.silent = True
    cfg = config(dns_server, rdap_server, web_server)
    results, _ = run(attribute(cfg, ["203.0.113.9"]))
    a, facts = results["203.0.113.9"]
    errors = {f.value: f.detail["error"] for f in F.of_kind(facts, F.ERROR)}
    assert "ptr" in errors and "rdap" in errors  # a timeout and "no RDAP server" are both visible
    assert a.contact is None


def test_offline_asn_table_and_cloud_provider(dns_server, rdap_server, web_server):
    world(dns_server, rdap_server, web_server)
    table = AsnTable.parse("203.0.113.0/24\t16509\tAMAZON-02\n")
    rdap_server.networks["203.0.113.0/24"] = rdap_network("203.0.113.0/24", "AMAZON-NET", handle="NET-AMZ",
                                                          org="Amazon Technologies Inc.", abuse="abuse@amazonaws.com")
    results, _ = run(attribute(config(dns_server, rdap_server, web_server), ["203.0.113.40"], asn_table=table))
    a, facts = results["203.0.113.40"]
    assert F.first_value(facts, F.ASN) == "16509"
    assert a.cloud == "Amazon Web Services" and a.owner_key == "cloud:Amazon Web Services"
    assert a.contact.address == "abuse@amazonaws.com"


def test_a_finished_scan_attributes_its_exposed_addresses_up_to_the_cap(dns_server, rdap_server, web_server,
                                                                         tmp_path):
    from dataclasses import replace

    from pacswatch.notify.config import Config
    from pacswatch.notify.service import attribute_after_scan
    from pacswatch.notify.store import NotifyStore
    from pacswatch.record import Record
    from pacswatch.store.repository import Repository

    world(dns_server, rdap_server, web_server)
    cfg = Config(attribution=replace(config(dns_server, rdap_server, web_server), after_scans_max=2))
    records = [Record(ip=ip, port=104, status="success", service="dicom", severity=sev)
               for ip, sev in (("192.0.2.10", "critical"), ("192.0.2.20", "low"), ("198.51.100.5", "high"),
                               ("198.51.100.9", None))]
    with Repository.open(str(tmp_path / "after.db")) as repo:
        line = attribute_after_scan(repo.engine, cfg, records, may_contact=contact_check(repo))
        stored = NotifyStore(repo.engine).attributions()
    assert line is not None and "attributed 2" in line and "1 more" in line
    # The first two exposed addresses, in the scan's order; never the one with no finding.
    assert set(stored) == {"192.0.2.10", "192.0.2.20"}
    assert violations() == []


def test_without_a_resolver_the_local_table_still_attributes_and_no_dns_is_sent(tmp_path, dns_server):
    """A hospital scanning its own 10/8 keeps its owners in the local table and may run no
    resolver: attribution works from the table, and no DNS query is made."""
    from datetime import datetime, timezone

    from pacswatch.attribution.local import LocalOwner
    from pacswatch.notify.config import Config
    from pacswatch.notify.service import attribute_after_scan
    from pacswatch.notify.store import NotifyStore
    from pacswatch.record import Record
    from pacswatch.store.repository import Repository

    records = [Record(ip="127.46.0.10", port=104, status="success", service="dicom", severity="critical")]
    with Repository.open(str(tmp_path / "none.db")) as repo:
        store = NotifyStore(repo.engine)
        store.add_owner(LocalOwner("127.46.0.0/24", "Lab Hospital", ("soc@example.org",)), datetime.now(timezone.utc))
        line = attribute_after_scan(repo.engine, Config(), records, may_contact=contact_check(repo))
        stored = store.attributions()
    assert line is not None and "attributed 1" in line and "without DNS" in line
    assert stored["127.46.0.10"]["contact"] == "soc@example.org"
    assert dns_server.queries == []
    assert violations() == []
