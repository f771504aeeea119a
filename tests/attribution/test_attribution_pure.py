"""The pure parts of attribution: security.txt, the ASN table, the local table, RDAP parsing and
bootstrap, cloud recognition, and the owner decision's precedence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.attribution import facts as F
from pacswatch.attribution.asn import AsnTable
from pacswatch.attribution.cloud import load_providers, recognise
from pacswatch.attribution.dns import confirm
from pacswatch.attribution.local import LocalOwner, best_match, validate
from pacswatch.attribution.owner import decide, digest
from pacswatch.attribution.rdap import RdapError, parse_autnum, parse_network, pick_server
from pacswatch.attribution.securitytxt import SecurityTxtError, candidate_domains, parse

from loopback_servers import rdap_autnum, rdap_network

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def fact(kind, value, subject="192.0.2.10", **detail):
    return F.Fact(subject, kind, value, "test", NOW, detail)


# ------------------------------------------------------------------ security.txt (RFC 9116)

def test_security_txt_fields_and_order():
    doc = parse("# comment\nContact: mailto:security@example.org\nContact: https://example.org/report\n"
                "Expires: 2030-01-01T00:00:00Z\nPreferred-Languages: en, nl\nPolicy: https://example.org/p\n"
                "Not a field line\nX-Custom: yes\n")
    assert doc.contacts == ("mailto:security@example.org", "https://example.org/report")
    assert doc.emails() == ["security@example.org"]
    assert doc.expires == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert doc.languages == ("en", "nl") and doc.policy == ("https://example.org/p",)
    assert doc.unknown == {"x-custom": ["yes"]} and not doc.expired(NOW)


def test_security_txt_signed_is_unwrapped():
    text = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nContact: mailto:cert@example.org\n"
            "- -not-a-dash-line\nExpires: 2020-01-01T00:00:00+00:00\n-----BEGIN PGP SIGNATURE-----\nabc\n"
            "-----END PGP SIGNATURE-----\n")
    doc = parse(text)
    assert doc.signed and doc.emails() == ["cert@example.org"] and doc.expired(NOW)


@pytest.mark.parametrize("text", ["Expires: 2030-01-01T00:00:00Z\n", "Contact: mailto:a@example.org\n"
                                  "Expires: 2030-01-01T00:00:00Z\nExpires: 2031-01-01T00:00:00Z\n",
                                  "Contact: mailto:a@example.org\nExpires: next tuesday\n"])
def test_security_txt_invalid(text):
    with pytest.raises(SecurityTxtError):
        parse(text)


def test_candidate_domains_skip_the_host_itself():
    assert candidate_domains("pacs.radiology.example.org") == ["radiology.example.org", "example.org"]
    assert candidate_domains("example.org") == ["example.org"]


# ------------------------------------------------------------------ tables

def test_asn_table_longest_prefix():
    table = AsnTable.parse("; pyasn ipasn format\n192.0.2.0/24\t64500\n192.0.2.128/25\t64501\tSmall Net\n"
                           "2001:db8::/32\t64502\n")
    assert table.lookup("192.0.2.1").asn == 64500
    match = table.lookup("192.0.2.200")
    assert (match.asn, match.prefix, match.holder) == (64501, "192.0.2.128/25", "Small Net")
    assert table.lookup("2001:db8::1").asn == 64502
    assert table.lookup("198.51.100.1") is None and len(table) == 3
    with pytest.raises(ValueError):
        AsnTable.parse("192.0.2.0/24\n")


def test_local_table_most_specific_wins():
    entries = [LocalOwner("192.0.2.0/24", "Region", ("noc@example.org",), id=1),
               LocalOwner("192.0.2.0/28", "Hospital", ("it@example.org",), id=2),
               LocalOwner("example.net", "Clinic", ("c@example.net",), id=3),
               LocalOwner("rad.example.net", "Radiology", ("r@example.net",), id=4)]
    assert best_match(entries, "192.0.2.5").name == "Hospital"
    assert best_match(entries, "192.0.2.99").name == "Region"
    assert best_match(entries, "198.51.100.1", ["pacs.rad.example.net"]).name == "Radiology"
    assert best_match(entries, "198.51.100.1", ["x.example.net"]).name == "Clinic"
    assert best_match(entries, "198.51.100.1") is None
    assert validate("192.0.2.0/24", ["ok@example.org"]) == []
    assert len(validate("not a thing!", ["nope"])) == 2


def test_forward_confirmation_is_pure():
    assert confirm("192.0.2.10", {"a.example.org": ["192.0.2.10"], "b.example.org": ["198.51.100.1", "bad"]}) == {
        "a.example.org": True, "b.example.org": False}


# ------------------------------------------------------------------ RDAP

def test_bootstrap_picks_most_specific_and_https():
    boot = {"services": [[["192.0.0.0/8"], ["http://a.example/", "https://a.example/"]],
                         [["192.0.2.0/24"], ["https://b.example/rdap"]],
                         [["64496-64511"], ["https://c.example/"]]]}
    assert pick_server(boot, "192.0.2.1") == "https://b.example/rdap/"
    assert pick_server(boot, "192.1.0.1") == "https://a.example/"
    assert pick_server(boot, "64500") == "https://c.example/"
    assert pick_server(boot, "198.51.100.1") is None


def test_parse_network_nested_abuse_and_origin_as():
    data = rdap_network("192.0.2.0/24", "EXAMPLE-NET", handle="NET-1", org="Example Hospital",
                        abuse="ABUSE@example.org", tech="noc@example.org", country="NL", origin_as=[64500])
    out = parse_network(data, subject="192.0.2.10", source="rdap:x", now=NOW, ttl_s=60)
    kinds = {(f.kind, f.value) for f in out}
    assert {(F.RDAP_NETWORK, "EXAMPLE-NET"), (F.RDAP_ORG, "Example Hospital"), (F.RDAP_ABUSE, "abuse@example.org"),
            (F.RDAP_CONTACT, "noc@example.org"), (F.RDAP_COUNTRY, "NL"), (F.ASN, "64500")} <= kinds
    assert out[0].detail["cidr"] == ["192.0.2.0/24"]
    assert parse_autnum(rdap_autnum(64500, "EX-AS", "Example Transit"), subject="s", source="x", now=NOW,
                        ttl_s=1)[0].value == "Example Transit"
    with pytest.raises(RdapError):
        parse_network({"objectClassName": "domain"}, subject="s", source="x", now=NOW, ttl_s=1)


# ------------------------------------------------------------------ cloud and the decision

def test_cloud_recognised_from_asn_org_or_ptr():
    providers = load_providers()
    assert recognise([fact(F.ASN, "16509")], providers).provider == "Amazon Web Services"
    assert recognise([fact(F.RDAP_ORG, "Hetzner Online GmbH")], providers).provider == "Hetzner"
    assert recognise([fact(F.PTR, "x.compute.amazonaws.com")], providers).matched.startswith("ptr")
    assert recognise([fact(F.ASN, "64500")], providers) is None


RDAP_FACTS = [fact(F.RDAP_NETWORK, "EXAMPLE-NET", handle="NET-1"), fact(F.RDAP_ORG, "Example ISP"),
              fact(F.RDAP_ABUSE, "abuse@example.net"), fact(F.RDAP_CONTACT, "noc@example.net")]
PTR_OK = fact(F.PTR, "pacs.rad.example.org", confirmed=True)
SECTXT = fact(F.SECURITY_TXT, "mailto:security@example.org", subject="example.org", domain="example.org",
              expires=(NOW + timedelta(days=30)).isoformat(), languages=["nl"], order=0)


def test_precedence_local_then_security_txt_then_rdap():
    local = [LocalOwner("192.0.2.0/24", "Example Hospital", ("ciso@example.org",), "nl", id=7)]
    a = decide("192.0.2.10", [*RDAP_FACTS, PTR_OK, SECTXT], local=local, now=NOW)
    assert (a.owner_key, a.contact.address, a.contact.role) == ("local:7", "ciso@example.org", "owner")
    assert a.escalation.address == "abuse@example.net" and a.confidence > 0.9

    a = decide("192.0.2.10", [*RDAP_FACTS, PTR_OK, SECTXT], now=NOW)
    assert (a.owner_key, a.contact.address, a.language) == ("domain:example.org", "security@example.org", "nl")
    assert a.escalation.address == "abuse@example.net"

    a = decide("192.0.2.10", RDAP_FACTS, now=NOW)
    assert (a.owner_key, a.owner_name, a.contact.address, a.contact.role) == (
        "rdap:NET-1", "Example ISP", "abuse@example.net", "abuse")
    assert a.escalation is None and 0.6 < a.confidence < 0.9

    a = decide("192.0.2.10", [f for f in RDAP_FACTS if f.kind != F.RDAP_ABUSE], now=NOW)
    assert a.contact.address == "noc@example.net" and a.confidence == 0.5

    a = decide("192.0.2.10", [], now=NOW)
    assert a.contact is None and a.confidence == 0 and a.reasons == ("no contact found in any source",)


def test_unconfirmed_ptr_never_leads_to_security_txt():
    unconfirmed = fact(F.PTR, "pacs.rad.example.org", confirmed=False)
    a = decide("192.0.2.10", [*RDAP_FACTS, unconfirmed, SECTXT], now=NOW)
    assert a.contact.address == "abuse@example.net"
    assert any("not forward-confirmed" in r for r in a.reasons)


def test_expired_security_txt_and_stale_facts_are_ignored():
    expired = fact(F.SECURITY_TXT, "mailto:old@example.org", subject="example.org", domain="example.org",
                   expires=(NOW - timedelta(days=1)).isoformat())
    assert decide("192.0.2.10", [*RDAP_FACTS, PTR_OK, expired], now=NOW).contact.address == "abuse@example.net"
    old = [F.Fact(f.subject, f.kind, f.value, f.source, NOW - timedelta(days=2), f.detail, ttl_s=3600)
           for f in RDAP_FACTS]
    assert decide("192.0.2.10", old, now=NOW).contact is None


def test_cloud_customer_unknown_goes_to_provider_and_known_customer_keeps_provider_as_escalation():
    cloud = [*RDAP_FACTS, fact(F.ASN, "16509")]
    providers = load_providers()
    a = decide("192.0.2.10", cloud, providers=providers, now=NOW)
    assert (a.owner_key, a.contact.address, a.contact.role) == ("cloud:Amazon Web Services", "abuse@amazonaws.com",
                                                                "provider")
    a = decide("192.0.2.10", [*cloud, PTR_OK, SECTXT], providers=providers, now=NOW)
    assert a.contact.address == "security@example.org" and a.escalation.address == "abuse@amazonaws.com"
    assert a.cloud == "Amazon Web Services"


def test_digest_ignores_times_but_not_values():
    later = [F.Fact(f.subject, f.kind, f.value, f.source, NOW + timedelta(hours=5), f.detail) for f in RDAP_FACTS]
    assert digest(RDAP_FACTS) == digest(later)
    assert digest(RDAP_FACTS) != digest([*RDAP_FACTS, fact(F.RDAP_ABUSE, "other@example.net")])


def test_fact_roundtrip():
    f = fact(F.PTR, "a.example.org", confirmed=True)
    assert F.Fact.from_dict(f.to_dict()) == f
