"""Session-wide real servers for the interop tests, all on distinct 127.x addresses.

Every server fixture starts its server the first time a test asks for it and stops it at the end
of the session. A missing binary (Orthanc, DCMTK) or C compiler FAILS the test with a message
saying what to install: the interop suite must never pass by skipping.

All server addresses come from one small loopback network (`interop_network`), so a single CIDR
target covers them all. An audit hook refuses any non-loopback connect/bind/sendto while an
interop test runs (`loopback.py`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:  # for `import fakedata` (tests/ is not a package)
    sys.path.insert(0, str(_TESTS))

import fakedata  # noqa: E402
from loopback import LoopbackPool, build_bind_shim, guard_active, install_guard, require_loopback  # noqa: E402
from pynetdicom_server import PynetdicomServer  # noqa: E402
from servers import (  # noqa: E402
    DcmqrscpServer,
    OrthancServer,
    OrthancTls,
    Peer,
    ServerError,
    StorescpServer,
)
from tlsfiles import TlsMaterial, make_tls_material  # noqa: E402

# AE titles the fixtures use. THATAE and PWHIDDEN7Q are deliberately absent from
# pacswatch.probes.base.DEFAULT_AE_GUESSES; ORTHANC is in it.
DCMQRSCP_AE = "THATAE"
HIDDEN_AE = "PWHIDDEN7Q"
ALLOWED_CALLING_AE = "FRIEND"


def _start(server: Any, request: pytest.FixtureRequest) -> Any:
    """Start `server` or fail the test; at the end of the session it is stopped."""
    reaper: list[Any] = request.getfixturevalue("_server_reaper")
    try:
        server.start()
    except (ServerError, RuntimeError, OSError) as exc:
        pytest.fail(f"could not start {server!r}: {exc}", pytrace=False)
    reaper.append(server)
    request.addfinalizer(server.begin_stop)
    return server


@pytest.fixture(scope="session", autouse=True)
def _server_reaper() -> Iterator[list[Any]]:
    """Set up before any server, torn down after all of them: each server fixture's own
    finalizer only sends SIGTERM, and this waits for them all at once."""
    servers: list[Any] = []
    yield servers
    for server in reversed(servers):
        server.stop()


# --- plumbing ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def interop_pool() -> LoopbackPool:
    return LoopbackPool()


@pytest.fixture(scope="session")
def interop_network(interop_pool: LoopbackPool) -> str:
    """The CIDR (a /27 under 127/8) that holds every interop server address."""
    return str(interop_pool.network)


@pytest.fixture(scope="session")
def interop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Servers' own files (config, storage, logs) live under here, apart from pacswatch's."""
    return tmp_path_factory.mktemp("interop-servers")


@pytest.fixture(scope="session")
def bind_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_bind_shim(tmp_path_factory.mktemp("bindshim"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def fake_files(interop_dir: Path) -> list[Path]:
    return fakedata.write_files(interop_dir / "fake-patients")


@pytest.fixture(scope="session")
def fake_datasets() -> list:
    return fakedata.make_datasets()


@pytest.fixture(scope="session")
def tls_material(interop_dir: Path, interop_pool: LoopbackPool) -> tuple[str, TlsMaterial]:
    ip = interop_pool.next()
    return ip, make_tls_material(interop_dir / "tls", ip)


@pytest.fixture(autouse=True)
def _loopback_guard() -> Iterator[None]:
    install_guard()
    guard_active(True)
    try:
        yield
    finally:
        guard_active(False)


@pytest.fixture
def assert_loopback() -> Callable[..., None]:
    """Call with every address about to be handed to the scanner; fails on a non-loopback one."""

    def check(*addresses: str) -> None:
        for address in addresses:
            try:
                require_loopback(address)
            except AssertionError as exc:
                pytest.fail(str(exc), pytrace=False)

    return check


@pytest.fixture
def run_probe(assert_loopback: Callable[..., None]) -> Callable[..., Any]:
    """run_probe(server_or_ip, port=None, **ProbeOptions fields) -> pacswatch Record."""

    def run(target: Any, port: int | None = None, **options: Any) -> Any:
        from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions
        from pacswatch.probes.dicom.probe import DicomProbe
        from pacswatch.scan.runner import probe_endpoint

        ip = target if isinstance(target, str) else target.ip
        port = port if port is not None else target.port
        assert_loopback(ip)
        record = asyncio.run(probe_endpoint(DicomProbe(), ProbeContext(ProbeOptions(**options)), Endpoint(ip, port)))
        # Every record of every probe test doubles as a leak check (the CLI test does the rest).
        leaked = fakedata.find_markers(record.model_dump_json())
        assert not leaked, f"patient data in the record: {leaked}"
        return record

    return run


# --- servers -------------------------------------------------------------------------------


def _orthanc(request, interop_pool, interop_dir, bind_shim, fake_files, name, **kwargs) -> OrthancServer:
    server = OrthancServer(
        kwargs.pop("ip", None) or interop_pool.next(),
        workdir=interop_dir / name,
        bind_shim=bind_shim,
        load=fake_files,
        **kwargs,
    )
    return _start(server, request)


@pytest.fixture(scope="session")
def orthanc_open(request, interop_pool, interop_dir, bind_shim, fake_files) -> OrthancServer:
    """Orthanc, AE ORTHANC, any called AE, C-FIND allowed to anyone; fake patients loaded."""
    return _orthanc(
        request, interop_pool, interop_dir, bind_shim, fake_files, "orthanc-open",
        config_overrides={"DicomAlwaysAllowFind": True},
    )


@pytest.fixture(scope="session")
def orthanc_default(request, interop_pool, interop_dir, bind_shim, fake_files) -> OrthancServer:
    """Orthanc with its own DICOM defaults (DicomAlwaysAllowFind false: unknown callers' FINDs
    are refused with an A-ABORT; echo and store allowed); fake patients loaded."""
    return _orthanc(request, interop_pool, interop_dir, bind_shim, fake_files, "orthanc-default")


@pytest.fixture(scope="session")
def orthanc_locked(request, interop_pool, interop_dir, bind_shim, fake_files) -> OrthancServer:
    """DicomCheckCalledAet with the product default AE ORTHANC (guessable); FIND allowed."""
    return _orthanc(
        request, interop_pool, interop_dir, bind_shim, fake_files, "orthanc-locked",
        config_overrides={"DicomCheckCalledAet": True, "DicomAlwaysAllowFind": True},
    )


@pytest.fixture(scope="session")
def orthanc_hidden_ae(request, interop_pool, interop_dir, bind_shim, fake_files) -> OrthancServer:
    """DicomCheckCalledAet with an AE title no guess list holds; FIND allowed to whoever knows it."""
    return _orthanc(
        request, interop_pool, interop_dir, bind_shim, fake_files, "orthanc-hidden",
        aet=HIDDEN_AE,
        config_overrides={"DicomCheckCalledAet": True, "DicomAlwaysAllowFind": True},
    )


@pytest.fixture(scope="session")
def orthanc_tls(request, interop_pool, interop_dir, bind_shim, fake_files, tls_material) -> OrthancServer:
    """DICOM over TLS only (self-signed server cert, client certificate required), FIND allowed
    to a client that has a certificate; `server.tls_material` has a client certificate."""
    ip, material = tls_material
    server = _orthanc(
        request, interop_pool, interop_dir, bind_shim, fake_files, "orthanc-tls",
        ip=ip,
        tls=OrthancTls(material.server_cert, material.server_key, material.client_ca),
        config_overrides={"DicomAlwaysAllowFind": True},
    )
    server.tls_material = material
    return server


@pytest.fixture(scope="session")
def dcmqrscp(request, interop_pool, interop_dir, bind_shim, fake_files) -> DcmqrscpServer:
    """dcmqrscp with one area THATAE (not guessable), open to ANY calling AE; fake patients."""
    server = DcmqrscpServer(
        interop_pool.next(), ae_title=DCMQRSCP_AE, peers=None, load=fake_files,
        workdir=interop_dir / "dcmqrscp", bind_shim=bind_shim,
    )
    return _start(server, request)


@pytest.fixture(scope="session")
def dcmqrscp_restricted(request, interop_pool, interop_dir, bind_shim, fake_files) -> DcmqrscpServer:
    """dcmqrscp area THATAE open only to calling AE FRIEND from host "localhost".

    dcmqrscp compares the host by name: a client on 127.0.0.1 is looked up as "localhost", and a
    HostTable entry "127.0.0.1" does not match it (found by experiment)."""
    server = DcmqrscpServer(
        interop_pool.next(), ae_title=DCMQRSCP_AE,
        peers=[Peer(ALLOWED_CALLING_AE, "localhost", 104)], load=fake_files,
        workdir=interop_dir / "dcmqrscp-restricted", bind_shim=bind_shim,
    )
    return _start(server, request)


@pytest.fixture(scope="session")
def storescp(request, interop_pool, interop_dir, bind_shim) -> StorescpServer:
    """DCMTK storescp: storage and verification only, any called AE."""
    server = StorescpServer(interop_pool.next(), workdir=interop_dir / "storescp", bind_shim=bind_shim)
    return _start(server, request)


@pytest.fixture(scope="session")
def pynetdicom_restricted(request, interop_pool, interop_dir, fake_datasets) -> PynetdicomServer:
    """pynetdicom SCP that accepts only calling AE FRIEND (others: RJ 1/1/3)."""
    server = PynetdicomServer(
        interop_pool.next(), require_calling_aet=[ALLOWED_CALLING_AE], datasets=fake_datasets,
        workdir=interop_dir / "pynetdicom-restricted",
    )
    return _start(server, request)


@pytest.fixture(scope="session")
def pynetdicom_open(request, interop_pool, interop_dir, fake_datasets) -> PynetdicomServer:
    """pynetdicom SCP open to anyone: Verification + Patient/Study Root FIND over the fakes."""
    server = PynetdicomServer(
        interop_pool.next(), datasets=fake_datasets, workdir=interop_dir / "pynetdicom-open",
    )
    return _start(server, request)


@pytest.fixture(scope="session")
def pynetdicom_many(request, interop_pool, interop_dir) -> PynetdicomServer:
    """pynetdicom SCP with 3,000 made-up studies at 10 ms per match: 30 s to send them all, so
    a C-CANCEL after a few has time to arrive."""
    from pydicom.dataset import Dataset

    studies = []
    for n in range(3000):
        ds = Dataset()
        ds.PatientID = "PW-CANCEL-1"
        ds.PatientName = "PWLEAK^CANCEL"
        ds.StudyInstanceUID = f"{fakedata.UID_ROOT}.77.{n}"
        studies.append(ds)
    server = PynetdicomServer(interop_pool.next(), datasets=studies, workdir=interop_dir / "pynetdicom-many",
                              find_delay=0.01)
    return _start(server, request)


ALL_SERVER_FIXTURES = (
    "orthanc_open",
    "orthanc_default",
    "orthanc_locked",
    "orthanc_hidden_ae",
    "orthanc_tls",
    "dcmqrscp",
    "dcmqrscp_restricted",
    "storescp",
    "pynetdicom_restricted",
    "pynetdicom_open",
)


@pytest.fixture(scope="session")
def all_servers(request) -> dict[str, Any]:
    """Every interop server, started, by fixture name."""
    return {name: request.getfixturevalue(name) for name in ALL_SERVER_FIXTURES}
