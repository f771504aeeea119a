"""The configuration of attribution and notification, from a TOML file (`--config`, else
PACSWATCH_NOTIFY_CONFIG). Every default is safe: nothing is sent (smtp.enabled = false), and
DNS goes to a named resolver only (the system's only with `[attribution] system_resolver = true`).

    [attribution]
    resolver = ["192.0.2.53"]            # or "192.0.2.53:5353"
    rdap_bootstrap = "https://data.iana.org/rdap/"
    asn_table = "/var/lib/pacswatch/ipasn.dat"
    security_txt_scheme = "https"

    [notify]
    followup_days = 14
    max_followups = 1
    escalate_days = 14
    stale_days = 30
    suppression_days = 3
    per_recipient_per_day = 3
    global_per_minute = 60
    dry_run_dir = "pacswatch-outbox"

    [sender]
    organisation = "Example CERT"
    from = "notify@example.org"
    reply_to = "cert@example.org"

    [smtp]
    enabled = false
    host = "smtp.example.org"
    port = 587
    security = "starttls"
    username = "notify"                  # password from $PACSWATCH_SMTP_PASSWORD
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pacswatch.attribution.attributor import AttributionConfig
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.rdap import DEFAULT_BOOTSTRAP, RdapConfig
from pacswatch.notify import outbox as O
from pacswatch.notify.cases import Policy
from pacswatch.notify.render import DEFAULT_OPTOUT, Sender
from pacswatch.notify.smtp import SmtpConfig
from pacswatch.notify.workflow import Settings

ENV = "PACSWATCH_NOTIFY_CONFIG"


@dataclass(frozen=True)
class Config:
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    settings: Settings = field(default_factory=Settings)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    dry_run_dir: str = "pacswatch-outbox"
    templates: str | None = None


def _section(data: dict, name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"[{name}] must be a table")
    return value


def from_dict(data: dict[str, Any]) -> Config:
    a, n, s, m = (_section(data, k) for k in ("attribution", "notify", "sender", "smtp"))
    resolvers = a.get("resolver", [])
    resolvers = [resolvers] if isinstance(resolvers, str) else list(resolvers)
    attribution = AttributionConfig(
        resolver=ResolverConfig(tuple(resolvers), float(a.get("dns_timeout", 5.0)),
                                bool(a.get("system_resolver", False))),
        rdap=RdapConfig(bootstrap_url=a.get("rdap_bootstrap", DEFAULT_BOOTSTRAP), server=a.get("rdap_server"),
                        timeout=float(a.get("rdap_timeout", 15.0)),
                        min_interval=float(a.get("rdap_min_interval", 1.0))),
        asn_table=a.get("asn_table"), cloud_table=a.get("cloud_table"),
        security_txt=bool(a.get("security_txt", True)), security_txt_scheme=a.get("security_txt_scheme", "https"),
        security_txt_port=a.get("security_txt_port"),
        negative_ttl_s=int(a.get("negative_ttl_hours", 1) * 3600),
        after_scans=bool(a.get("after_scans", True)), after_scans_max=int(a.get("after_scans_max", 200)),
    )
    policy = Policy.days(n.get("followup_days", 14), int(n.get("max_followups", 1)), n.get("escalate_days", 14),
                         n.get("stale_days", 30))
    limits = O.RateLimits(per_recipient=int(n.get("per_recipient_per_day", 3)), per_recipient_window=timedelta(days=1),
                          global_per_window=int(n.get("global_per_minute", 60)), global_window=timedelta(minutes=1),
                          suppression=timedelta(days=float(n.get("suppression_days", 3))))
    backoff = O.Backoff(first=timedelta(seconds=float(n.get("retry_first_seconds", 60))),
                        max_attempts=int(n.get("retry_max_attempts", 10)))
    sender = Sender(organisation=s.get("organisation", Sender.organisation), from_addr=s.get("from", Sender.from_addr),
                    reply_to=s.get("reply_to"), tag=s.get("tag", "pacswatch"), optout=s.get("optout", DEFAULT_OPTOUT),
                    signature=s.get("signature", Sender.signature))
    smtp = SmtpConfig(enabled=bool(m.get("enabled", False)), host=m.get("host"), port=int(m.get("port", 587)),
                      security=m.get("security", "starttls"), username=m.get("username"),
                      password_env=m.get("password_env", "PACSWATCH_SMTP_PASSWORD"),
                      timeout=float(m.get("timeout", 30.0)), helo=m.get("helo"),
                      envelope_from=m.get("envelope_from"), cafile=m.get("cafile"))
    return Config(attribution, Settings(policy, limits, backoff, sender), smtp,
                  n.get("dry_run_dir", "pacswatch-outbox"), n.get("templates"))


def load(path: str | None = None) -> Config:
    path = path or os.environ.get(ENV)
    if not path:
        return Config()
    with open(Path(path).expanduser(), "rb") as fh:
        return from_dict(tomllib.load(fh))
