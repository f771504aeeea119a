"""The configuration of attribution and notification, from a TOML file (`--config`, else
PACSWATCH_NOTIFY_CONFIG). Every default is safe: nothing is sent (smtp.enabled = false), and
DNS goes to a named resolver only (the system's only with `[attribution] system_resolver = true`).

The file is read into a typed model (`ConfigFile`, pydantic, strict): a key we do not know, a
value of the wrong type or out of range is one error naming the key (`ConfigError`), before
anything runs. Strict matters: `enabled = "false"` is a string, and a string is true in Python;
it used to send mail. `pacswatch config init` writes a commented sample (sample-config.toml.j2).

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

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from pacswatch.attribution.attributor import AttributionConfig
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.rdap import DEFAULT_BOOTSTRAP, RdapConfig
from pacswatch.deception import DEFAULT_THRESHOLD
from pacswatch.mailaddr import addr_spec, has_control
from pacswatch.notify import configpath
from pacswatch.notify import outbox as O
from pacswatch.notify.cases import Policy
from pacswatch.notify.render import DEFAULT_OPTOUT, Sender
from pacswatch.notify.smtp import SmtpConfig
from pacswatch.notify.tokens import VerifyLinks
from pacswatch.notify.workflow import Settings


@dataclass(frozen=True)
class Config:
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    settings: Settings = field(default_factory=Settings)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    dry_run_dir: str = "pacswatch-outbox"
    templates: str | None = None
    confirm_fixed_after: str | None = None  # [campaign]; scan and run parse it (findings/schedule.py)
    scanner_addresses: tuple[str, ...] = ()  # [web]: where the scans come from, for the dashboard's /about


class ConfigError(ValueError):
    """The configuration file is not valid: names the file and the key."""


def _one_line(value: str) -> str:
    # Goes into a mail header or the first lines of a notice: no line break, no control.
    if has_control(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _address(value: str) -> str:
    addr_spec(value)
    return value


def _tag(value: str) -> str:
    # In every subject and in the attachment's file name.
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,40}", value):
        raise ValueError("must be 1 to 40 letters, digits, '.', '_' or '-'")
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
EmailAddress = Annotated[str, AfterValidator(_address)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    # strict: no "false" for false, no "25" for 25; forbid: a misspelt key is an error, not a default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class AttributionSection(_Section):
    resolver: OneLine | list[OneLine] = Field(default_factory=list)
    dns_timeout: Positive = 5.0
    system_resolver: bool = False
    rdap_bootstrap: OneLine = DEFAULT_BOOTSTRAP
    rdap_server: OneLine | None = None
    rdap_timeout: Positive = 15.0
    rdap_min_interval: Annotated[float, Field(ge=0)] = 1.0
    asn_table: str | None = None
    cloud_table: str | None = None
    security_txt: bool = True
    security_txt_scheme: Literal["https", "http"] = "https"
    security_txt_port: Port | None = None
    # Deadlines in seconds: one domain's security.txt lookup, every lookup of one address, and
    # the attribution after a scan (what is left then is `pacswatch attribute`'s).
    security_txt_timeout: Positive = AttributionConfig.security_txt_timeout
    address_deadline: Positive = AttributionConfig.address_deadline_s
    after_scans_deadline: Positive = AttributionConfig.after_scans_deadline_s
    negative_ttl_hours: Annotated[float, Field(ge=0)] = 1.0
    after_scans: bool = True
    after_scans_max: Count = 200


class NotifySection(_Section):
    followup_days: Positive = 14
    max_followups: Count = 1
    escalate_days: Positive = 14
    stale_days: Positive = 30
    suppression_days: Annotated[float, Field(ge=0)] = 3
    per_recipient_per_day: Count = 3
    global_per_minute: Count = 60
    retry_first_seconds: Positive = 60
    retry_max_attempts: Annotated[int, Field(ge=1)] = 10
    dry_run_dir: str = "pacswatch-outbox"
    templates: str | None = None
    list_protected: bool = True  # list services that refuse unknown callers, apart, in notices
    # Findings whose deception verdict reaches this confidence are not notified (deception.py).
    deception_threshold: Annotated[float, Field(ge=0, le=1)] = DEFAULT_THRESHOLD


class SenderSection(_Section):
    organisation: OneLine = Sender.organisation
    from_: EmailAddress = Field(Sender.from_addr, alias="from")
    reply_to: EmailAddress | None = None
    tag: Annotated[str, AfterValidator(_tag)] = Sender.tag
    optout: str = DEFAULT_OPTOUT
    signature: str = Sender.signature


class SmtpSection(_Section):
    enabled: bool = False
    host: OneLine | None = None
    port: Port = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: OneLine | None = None
    password_env: OneLine = "PACSWATCH_SMTP_PASSWORD"
    timeout: Positive = 30.0
    helo: OneLine | None = None
    envelope_from: EmailAddress | None = None
    cafile: str | None = None


def _confirm_after(value: str) -> str:
    from pacswatch.findings.schedule import parse_confirm_after

    parse_confirm_after(value)  # refused here, with its key, as `scan` and `run` would refuse it
    return value


class WebSection(_Section):
    # The dashboard (`pacswatch serve`): with `url` and `secret_file`, each notice carries a
    # signed /verify link for its case, valid `verify_days`; the dashboard checks it with the
    # same secret (its --secret-file).
    url: OneLine | None = None
    secret_file: str | None = None
    verify_days: Positive = 60
    scanner_addresses: list[OneLine] = Field(default_factory=list)  # shown on /about: where scans come from


class CampaignSection(_Section):
    # How long a finding one scan missed stays open before a second miss may fix it: "6h", "30m",
    # "0" (findings/lifecycle.py); `scan` and `run` read it.
    confirm_fixed_after: Annotated[str, AfterValidator(_confirm_after)] | None = None


class ConfigFile(_Section):
    campaign: CampaignSection = Field(default_factory=CampaignSection)
    attribution: AttributionSection = Field(default_factory=AttributionSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    sender: SenderSection = Field(default_factory=SenderSection)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    web: WebSection = Field(default_factory=WebSection)


def _where(loc: tuple) -> str:
    """A pydantic error location as the TOML key: ("smtp", "enabled") -> "[smtp] enabled"."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    # A union reports the branch it tried ("str", "list[str]"); the key is what the user wrote.
    parts = [p for p in parts if not re.match(r"^(str|list\[|function-after\[|float|int|bool|none)", p)]
    if not parts:
        return "the file"
    return f"[{parts[0]}]" + (f" {'.'.join(parts[1:])}" if len(parts) > 1 else "")


def _known_keys(loc: tuple) -> list[str]:
    """The keys the TOML accepts where `loc` points: the sections at the top, a section's keys
    (by their TOML names: `from`, not `from_`) inside one."""
    if len(loc) == 1:
        return list(ConfigFile.model_fields)
    field = ConfigFile.model_fields.get(str(loc[0]))
    section = field.annotation if field is not None else None
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return []
    return [f.alias or name for name, f in section.model_fields.items()]


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        # A typo is the usual cause: name the key that was probably meant.
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"]), n=1)
        return f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
    if kind == "bool_type":
        return f"must be true or false (without quotes), not {error['input']!r}"
    if kind in ("model_type", "dict_type"):
        return "must be a table"
    text = error["msg"].removeprefix("Value error, ").replace("Input should", "should")
    given = error.get("input")
    if kind == "value_error" or isinstance(given, dict):  # ours (address.py quotes the value), or a table
        return text
    return f"{text}, not {given!r}"


def validate(data: dict[str, Any], *, source: str = "the configuration") -> ConfigFile:
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        seen: dict[str, str] = {}
        for error in exc.errors():
            seen.setdefault(_where(error["loc"]), _message(error))  # a union fails once per branch
        problems = "; ".join(f"{key}: {why}" for key, why in seen.items())
        raise ConfigError(f"{source}: {problems}") from None


def from_dict(data: dict[str, Any], *, source: str = "the configuration") -> Config:
    f = validate(data, source=source)
    a, n, s, m = f.attribution, f.notify, f.sender, f.smtp
    resolvers = [a.resolver] if isinstance(a.resolver, str) else list(a.resolver)
    attribution = AttributionConfig(
        resolver=ResolverConfig(tuple(resolvers), a.dns_timeout, a.system_resolver),
        rdap=RdapConfig(bootstrap_url=a.rdap_bootstrap, server=a.rdap_server, timeout=a.rdap_timeout,
                        min_interval=a.rdap_min_interval),
        asn_table=a.asn_table, cloud_table=a.cloud_table, security_txt=a.security_txt,
        security_txt_scheme=a.security_txt_scheme, security_txt_port=a.security_txt_port,
        security_txt_timeout=a.security_txt_timeout, address_deadline_s=a.address_deadline,
        after_scans_deadline_s=a.after_scans_deadline, negative_ttl_s=int(a.negative_ttl_hours * 3600), after_scans=a.after_scans,
        after_scans_max=a.after_scans_max,
    )
    policy = Policy.days(n.followup_days, n.max_followups, n.escalate_days, n.stale_days)
    limits = O.RateLimits(per_recipient=n.per_recipient_per_day, per_recipient_window=timedelta(days=1),
                          global_per_window=n.global_per_minute, global_window=timedelta(minutes=1),
                          suppression=timedelta(days=n.suppression_days))
    backoff = O.Backoff(first=timedelta(seconds=n.retry_first_seconds), max_attempts=n.retry_max_attempts)
    sender = Sender(organisation=s.organisation, from_addr=s.from_, reply_to=s.reply_to, tag=s.tag,
                    optout=s.optout, signature=s.signature, list_protected=n.list_protected)
    smtp = SmtpConfig(enabled=m.enabled, host=m.host, port=m.port, security=m.security, username=m.username,
                      password_env=m.password_env, timeout=m.timeout, helo=m.helo, envelope_from=m.envelope_from,
                      cafile=m.cafile)
    return Config(attribution, Settings(policy, limits, backoff, sender, deception_threshold=n.deception_threshold,
                                          verify=_verify_links(f.web, source)), smtp,
                  n.dry_run_dir, n.templates, f.campaign.confirm_fixed_after, tuple(f.web.scanner_addresses))


def _verify_links(web: WebSection, source: str) -> VerifyLinks | None:
    """[web]: both `url` and `secret_file`, or neither (a link no one can check is worse than none)."""
    if web.url is None and web.secret_file is None:
        return None
    if web.url is None or web.secret_file is None:
        raise ConfigError(f"{source}: [web] needs both url and secret_file for verify links, or neither")
    if not re.match(r"https?://[^/\s]+", web.url):
        raise ConfigError(f"{source}: [web] url: must start with https:// (or http://), not {web.url!r}")
    return VerifyLinks(web.url, Path(web.secret_file), timedelta(days=web.verify_days))


def load(path: str | None = None) -> Config:
    path = configpath.named(path)
    if path is None:
        return Config()
    try:
        with open(Path(path).expanduser(), "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration {path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror or exc}") from None
    return from_dict(data, source=f"configuration {path}")


def sample() -> str:
    """The commented sample configuration `pacswatch config init` writes (every value in it is
    one the model accepts: a test loads it)."""
    return resources.files("pacswatch.notify").joinpath("templates/sample-config.toml.j2").read_text("utf-8")
