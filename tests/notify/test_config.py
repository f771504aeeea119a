"""The notify/attribution configuration is read into a typed model: a wrong type, an unknown
key or a value out of range is one clear error naming the key, before anything runs; the
sample `pacswatch config init` writes is accepted as it is."""

from __future__ import annotations

import re
import tomllib

import pytest

from pacswatch.cli import main
from pacswatch.notify import config as configuration


def test_the_sample_configuration_is_accepted_as_written():
    text = configuration.sample()
    config = configuration.from_dict(tomllib.loads(text))
    assert config.smtp.enabled is False and config.smtp.host is None and config.smtp.port == 587
    assert config.attribution.resolver.nameservers == () and not config.attribution.resolver.system
    assert config.settings.sender.list_protected and config.settings.policy.followup_after.days == 14
    assert config.dry_run_dir == "pacswatch-outbox"
    # As written it sends nothing and queries no one; the examples, uncommented, are accepted too.
    assert config.settings.sender.from_addr == "pacswatch@localhost"
    filled = configuration.from_dict(tomllib.loads(re.sub(r"(?m)^# (?=[a-z_]+ = )", "", text)))
    assert filled.settings.sender.from_addr == "notify@example.org" and filled.smtp.host == "smtp.example.org"
    assert filled.attribution.resolver.nameservers == ("192.0.2.53",) and filled.smtp.username == "notify"
    assert config.confirm_fixed_after is None and filled.confirm_fixed_after == "6h"
    assert "[campaign]" in text


def test_the_attribution_deadlines_can_be_set():
    text = "[attribution]\nsecurity_txt_timeout = 2.5\naddress_deadline = 20\nafter_scans_deadline = 90.0\n"
    attribution = configuration.from_dict(tomllib.loads(text)).attribution
    assert (attribution.security_txt_timeout, attribution.address_deadline_s,
            attribution.after_scans_deadline_s) == (2.5, 20, 90.0)
    # Unset, they are the attributor's own defaults, as the sample says.
    default = configuration.from_dict({}).attribution
    sample = configuration.from_dict(tomllib.loads(configuration.sample())).attribution
    assert (sample.security_txt_timeout, sample.address_deadline_s, sample.after_scans_deadline_s) == (
        default.security_txt_timeout, default.address_deadline_s, default.after_scans_deadline_s)


@pytest.mark.parametrize(("text", "error"), [
    ('[smtp]\nenabled = "false"\n', '[smtp] enabled: must be true or false (without quotes), not \'false\''),
    ("[smtp]\nenabeld = true\n", "[smtp] enabeld: unknown key (did you mean enabled?)"),
    ("[mail]\nhost = 'x'\n", "[mail]: unknown key"),
    ("[notfy]\nfollowup_days = 3\n", "[notfy]: unknown key (did you mean notify?)"),
    ('[sender]\nfrm = "a@example.org"\n', "[sender] frm: unknown key (did you mean from?)"),
    ('[smtp]\nport = "25"\n', "[smtp] port: should be a valid integer, not '25'"),
    ("[smtp]\nport = 70000\n", "[smtp] port: should be less than or equal to 65535, not 70000"),
    ('[smtp]\nsecurity = "ssl"\n', "[smtp] security: should be 'starttls', 'tls' or 'none', not 'ssl'"),
    ("[notify]\nfollowup_days = 0\n", "[notify] followup_days: should be greater than 0, not 0"),
    ("[attribution]\nresolver = 53\n", "[attribution] resolver: should be a valid string, not 53"),
    ("smtp = 1\n", "[smtp]: must be a table"),
    ('[sender]\nfrom = "a@example.org, b@example.org"\n',
     '[sender] from: not exactly one plain e-mail address: "a@example.org, b@example.org"'),
    ('[sender]\norganisation = "Example\\r\\nBcc: x@example.org"\n',
     "[sender] organisation: must not contain control characters or line breaks"),
    ('[sender]\ntag = "a b"\n', "[sender] tag: must be 1 to 40 letters, digits"),
    ("[attribution]\naddress_deadline = 0\n", "[attribution] address_deadline: should be greater than 0, not 0"),
])
def test_a_bad_value_is_one_error_naming_the_key(text, error):
    with pytest.raises(configuration.ConfigError) as raised:
        configuration.from_dict(tomllib.loads(text), source="configuration x.toml")
    assert str(raised.value).startswith("configuration x.toml: ")
    assert error in str(raised.value)


def test_an_unknown_key_like_no_known_one_gets_no_suggestion():
    with pytest.raises(configuration.ConfigError) as raised:
        configuration.from_dict(tomllib.loads("[smtp]\nxyzzy = 1\n"), source="x.toml")
    assert str(raised.value) == "x.toml: [smtp] xyzzy: unknown key"


def test_several_problems_are_named_together():
    with pytest.raises(configuration.ConfigError) as raised:
        configuration.from_dict(tomllib.loads('[smtp]\nenabled = "yes"\nport = "x"\n'))
    assert "[smtp] enabled: must be true or false" in str(raised.value)
    assert "[smtp] port: should be a valid integer" in str(raised.value)


def test_config_init_writes_the_sample_once_and_check_reads_it(tmp_path, capsys):
    path = tmp_path / "notify.toml"
    assert main(["config", "init", "-o", str(path)]) == 0
    assert path.read_text() == configuration.sample() and (path.stat().st_mode & 0o777) == 0o600
    assert main(["config", "init", "-o", str(path)]) == 2
    assert "exists; not overwritten" in capsys.readouterr().err
    assert main(["config", "check", "--config", str(path)]) == 0
    assert "valid; sending disabled" in capsys.readouterr().out
    path.write_text('[smtp]\nenabled = "false"\n')
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "[smtp] enabled: must be true or false" in err and "Traceback" not in err
    path.write_text("[smtp\n")
    assert main(["config", "check", "--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_a_bad_configuration_stops_a_command_with_exit_2(tmp_path, capsys):
    path = tmp_path / "notify.toml"
    path.write_text("[notify]\nfollowup_days = \"14\"\n")
    assert main(["cases", "--config", str(path), "--database", str(tmp_path / "db.sqlite")]) == 2
    assert "pacswatch cases: configuration" in capsys.readouterr().err
