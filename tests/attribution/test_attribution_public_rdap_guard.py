"""Addresses no registry allocates never make the public RDAP bootstrap be asked about them."""

from __future__ import annotations

import pytest

from pacswatch.attribution.attributor import Attributor
from pacswatch.attribution.rdap import DEFAULT_BOOTSTRAP, RdapConfig
from pacswatch.notify.config import Config


@pytest.mark.parametrize("ip, asks", [("127.42.0.10", False), ("10.1.2.3", False), ("192.0.2.7", False),
                                      ("11.0.0.1", True)])
def test_public_bootstrap_is_only_for_global_addresses(ip, asks):
    # Only the decision is exercised: nothing is sent (11.0.0.1 is never contacted here).
    config = Config().attribution
    assert config.rdap.bootstrap_url == DEFAULT_BOOTSTRAP and config.rdap.server is None
    assert Attributor(config)._public_rdap_knows(ip) is asks


def test_a_configured_registry_is_asked_about_anything():
    config = Config().attribution
    config = type(config)(**{**config.__dict__, "rdap": RdapConfig(bootstrap_url="http://127.0.0.9:1/")})
    assert Attributor(config)._public_rdap_knows("10.1.2.3")
