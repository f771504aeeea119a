import pytest

from loopback_servers import DnsServer, RdapServer, SecurityTxtServer, loopback_only


@pytest.fixture(autouse=True)
def _loopback_only():
    with loopback_only():
        yield


@pytest.fixture
def dns_server():
    server = DnsServer("127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture
def rdap_server():
    server = RdapServer("127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture
def web_server():
    server = SecurityTxtServer("127.0.0.1").start()
    yield server
    server.stop()
