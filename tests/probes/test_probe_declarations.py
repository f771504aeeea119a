"""Each probe declares its options (probes/options.py): the command line builds them, a scan
stores their values, and the probe's own configure() turns them into ProbeOptions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pacswatch.probes import registry
from pacswatch.probes.options import Option, ProbeDeclaration
from pacswatch.probes.registry import declared_options, probe_options, probe_settings


def _capitals(text: str) -> None:
    if not text.isupper():
        raise ValueError(f"invalid echo word {text!r}: capitals only")


def _never_made():
    raise AssertionError("neither the parser nor the options make the probe")


# A probe added later, as a new module would add it: its declaration, and nothing in cli/.
ECHO = ProbeDeclaration(
    "echo",
    (Option("echo-count", "how many echoes (default %(default)s)", 3, int, "echo count", metavar="N"),
     Option("echo-word", "the word to echo", "HELLO", str, "echo word", _capitals),
     Option("no-echo", "send no echo")),
    lambda settings, options: replace(options, find_limit=settings["echo_count"] * 100),
    lambda: _never_made,
)


@pytest.fixture
def with_echo(monkeypatch):
    monkeypatch.setattr(registry, "PROBES", (*registry.PROBES, ECHO))


@pytest.mark.parametrize("command", [["scan", "127.0.0.1"], ["probe", "127.0.0.1"], ["run"]])
def test_a_declared_probe_brings_its_options_to_every_probing_command(with_echo, command, capsys):
    from pacswatch.cli import build_parser
    from pacswatch.cli.options import probe_settings as settings_of

    parser = build_parser()
    settings = settings_of(parser.parse_args([*command, "--echo-count", "7", "--echo-word", "HI", "--no-echo"]))
    assert (settings["echo_count"], settings["echo_word"], settings["no_echo"]) == (7, "HI", True)
    assert settings_of(parser.parse_args(command))["echo_count"] == 3  # its default, written once
    assert probe_options(settings).find_limit == 700  # the probe's own configure() ran
    for bad, says in ((["--echo-count", "0"], "argument --echo-count: invalid echo count: must be greater than 0"),
                      (["--echo-word", "hi"], "argument --echo-word: invalid echo word 'hi': capitals only")):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*command, *bad])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([command[0], "--help"])
    assert "how many echoes (default 3)" in " ".join(capsys.readouterr().out.split())


def test_the_options_are_declared_once_and_every_default_round_trips():
    keys = [o.key for o in declared_options()]
    assert len(keys) == len(set(keys))
    assert {"timeout", "contact_url", "no_find", "calling_ae", "tls_ports", "try_default_credentials"} <= set(keys)
    defaults = probe_settings()
    assert probe_settings(defaults.stored()) == defaults
    options = probe_options(defaults)
    assert (options.identity.calling_ae, options.find_limit, options.tls_ports) == ("PACSWATCH", 1000, {2762})
    assert options.timeouts.connect == 4.0 and not options.try_default_credentials


def test_a_scan_stored_before_an_option_existed_resumes_with_its_default(with_echo):
    stored = {"timeout": 2.0, "no_find": True, "ae_guess": None, "dropped_long_ago": 1}
    settings = probe_settings(stored)
    assert settings["timeout"] == 2.0 and settings["no_find"] is True
    assert settings["echo_count"] == 3  # declared after the scan was stored
    assert "dropped_long_ago" not in settings.stored()
    with pytest.raises(TypeError):
        settings.values["timeout"] = 9  # type: ignore[index]  # settings are frozen all the way


def test_a_bad_stored_value_is_refused_when_options_are_built():
    # Values from a stored scan do not pass through the parser: the probe's configure() checks.
    with pytest.raises(ValueError, match="invalid AE title"):
        probe_options(probe_settings({"calling_ae": "A\nB"}))
