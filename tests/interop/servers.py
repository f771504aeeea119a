"""Real DICOM servers on loopback for the interop tests: Orthanc, DCMTK dcmqrscp and storescp,
and a pynetdicom SCP (in `pynetdicom_server.py`).

Each server is a context manager: `start()` writes its config into its own work directory, runs
the binary with an LD_PRELOAD shim that pins its listening sockets to the given 127.x address
(`loopback.py`), waits until it accepts connections, loads the given DICOM files, and checks with
psutil that it listens on loopback only. `stop()` ends the process group it started (by pid) and
removes the server's storage; config and logs stay in `workdir/` for post-mortems.

Files are laid out so a test can tell the servers' files from pacswatch's: everything a server
writes is under its `workdir` (`storage/`, `logs/`, config); pacswatch gets other directories.
The servers' storage of course holds the fake patients.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from loopback import BIND_ENV, free_port, is_loopback, require_loopback

ORTHANC_BIN = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = ORTHANC_PLUGIN_DIR / "libOrthancDicomWeb.so"
# Use the DCMTK binaries by absolute path: `storescp` on PATH may be pynetdicom's shim.
DCMQRSCP_BIN = "/usr/bin/dcmqrscp"
DCMQRIDX_BIN = "/usr/bin/dcmqridx"
STORESCP_BIN = "/usr/bin/storescp"

_APT = {ORTHANC_BIN: "orthanc", DCMQRSCP_BIN: "dcmtk", DCMQRIDX_BIN: "dcmtk", STORESCP_BIN: "dcmtk"}


class ServerError(RuntimeError):
    """A server could not be started or did not behave; the message says why."""


def require_binary(path: str | os.PathLike[str]) -> str:
    path = str(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        package = _APT.get(path)
        hint = f" (apt install {package})" if package else ""
        raise ServerError(f"interop tests need {path}{hint}, which is not installed")
    return path


def wait_for_tcp(ip: str, port: int, deadline: float, alive=lambda: True) -> None:
    """Until `deadline` (time.monotonic), try to connect; raise ServerError if it never works."""
    require_loopback(ip)
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise ServerError("process exited before accepting connections")
        try:
            with socket.create_connection((ip, port), timeout=1.0):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise ServerError(f"{ip}:{port} did not accept connections in time ({last})")


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int


class ManagedProcess:
    """One server process (and its children) with a work dir, a log, and a port on `ip`."""

    name = "server"
    startup_timeout = 30.0
    start_attempts = 3  # a picked free port can be taken before the server binds it

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int | None = None,
        *,
        workdir: Path | None = None,
        bind_shim: Path | None = None,
        allow_wildcard_bind: bool = False,
        keep_storage: bool = False,
    ) -> None:
        self.ip = require_loopback(ip)
        self.allow_wildcard_bind = allow_wildcard_bind
        self._fixed_port = port
        self.port = port or 0
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"pw-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.workdir / "logs"
        self.storage_dir = self.workdir / "storage"
        self.bind_shim = bind_shim
        self.keep_storage = keep_storage
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._attempt = 0

    # -- subclass hooks --
    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config and storage before the process starts (called once per attempt)."""

    def wait_ready(self, deadline: float) -> None:
        wait_for_tcp(self.ip, self.port, deadline, self.alive)

    def after_start(self) -> None:
        """Load data etc. once the server accepts connections."""

    def pick_ports(self) -> None:
        self.port = self._fixed_port or free_port(self.ip)

    # -- lifecycle --
    @property
    def log_path(self) -> Path:
        return self.logs_dir / f"{self.name}.{self._attempt}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LD_PRELOAD")}
        if self.bind_shim is not None:
            env["LD_PRELOAD"] = str(self.bind_shim)
            env[BIND_ENV] = self.ip
        return env

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ManagedProcess":
        if self.bind_shim is None and not self.allow_wildcard_bind:
            # Without the shim Orthanc and DCMTK listen on every interface.
            raise ServerError(f"{self.name} needs bind_shim=loopback.build_bind_shim(dir) to stay on loopback")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for attempt in range(self.start_attempts):
            self._attempt = attempt
            self.pick_ports()
            self.prepare()
            command = self.command()  # raises ServerError when the binary is missing
            self._log_file = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends it and its children
            )
            try:
                self.wait_ready(time.monotonic() + self.startup_timeout)
            except ServerError as exc:
                errors.append(f"attempt {attempt}: {exc}\n{self.log_tail()}")
                self._kill()
                if self._fixed_port:
                    break
                continue
            try:
                self.check_listeners()
                self.after_start()
            except BaseException:
                self.stop()
                raise
            return self
        raise ServerError(f"{self.name} on {self.ip} did not start:\n" + "\n".join(errors))

    def listeners(self) -> list[Listener]:
        """TCP sockets in LISTEN state held by the process or its children."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        out: set[Listener] = set()
        for p in procs:
            try:
                conns = p.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN and c.laddr:
                    out.add(Listener(c.laddr.ip, c.laddr.port))
        return sorted(out, key=lambda x: (x.ip, x.port))

    def check_listeners(self) -> None:
        if self.allow_wildcard_bind:
            return
        bad = [x for x in self.listeners() if not is_loopback(x.ip)]
        if bad:
            raise ServerError(f"{self.name} listens on non-loopback addresses: {bad}")

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def begin_stop(self) -> None:
        """Send SIGTERM to the server's process group and return at once (Orthanc takes a few
        seconds to shut down; stopping many in parallel saves the difference)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group we created, by its id
            except ProcessLookupError:
                pass

    def _kill(self) -> None:
        self.begin_stop()
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group, forked children included
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        self._kill()
        if not self.keep_storage:
            shutil.rmtree(self.storage_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ip}:{self.port} workdir={self.workdir}>"


# --- Orthanc ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrthancTls:
    """Files for Orthanc's DICOM TLS (`DicomTls*` options)."""

    certificate: Path
    private_key: Path
    trusted_certificates: Path  # CA(s) that client certificates must chain to
    remote_certificate_required: bool = True


class OrthancServer(ManagedProcess):
    """Orthanc 1.10 with a generated JSON config.

    `config_overrides` are merged last over the base config below (a value of None deletes the
    key, e.g. `{"AuthenticationEnabled": None}` to test Orthanc's own default). `plugins` are
    paths for "Plugins"; `dicomweb=True` adds the DICOMweb plugin. `load` files are POSTed to
    `/instances` after start-up, with `credentials` (or the first of RegisteredUsers) when the
    REST API needs them.

    Orthanc 1.10 cannot choose its listening address (no such option); the bind shim pins both
    ports to `ip`. Note for web tests: `RemoteAccessAllowed: false` does not lock out loopback
    clients, and a client connecting to any 127.x address comes from 127.0.0.1, so with the base
    config the REST API is open to every interop client.
    """

    name = "orthanc"

    def __init__(
        self,
        ip: str = "127.0.0.1",
        *,
        aet: str = "ORTHANC",
        dicom_port: int | None = None,
        http_port: int | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        plugins: Sequence[str | os.PathLike[str]] = (),
        dicomweb: bool = False,
        tls: OrthancTls | None = None,
        load: Iterable[Path] = (),
        credentials: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(ip, dicom_port, **kwargs)
        self.aet = aet
        self._fixed_http_port = http_port
        self.http_port = http_port or 0
        self.config_overrides = dict(config_overrides or {})
        self.plugins = [str(p) for p in plugins]
        if dicomweb:
            self.plugins.append(str(DICOMWEB_PLUGIN))
        self.tls = tls
        self.load_files = list(load)
        self._credentials = credentials
        self.config_path = self.workdir / "orthanc.json"
        self.index_dir = self.workdir / "storage" / "index"
        self.loaded: dict[str, Any] | None = None  # /statistics after loading

    @property
    def dicom_port(self) -> int:
        return self.port

    @property
    def http_url(self) -> str:
        return f"http://{self.ip}:{self.http_port}"

    def pick_ports(self) -> None:
        super().pick_ports()
        self.http_port = self._fixed_http_port or free_port(self.ip)
        while self.http_port == self.port:
            self.http_port = free_port(self.ip)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "Name": f"pacswatch-interop-{self.aet}",
            "StorageDirectory": str(self.storage_dir / "files"),
            "IndexDirectory": str(self.index_dir),
            "DicomAet": self.aet,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "RegisteredUsers": {},
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomModalities": {},
            "Plugins": self.plugins,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "DicomThreadsCount": 4,
            "SaveJobs": False,
            "StableAge": 2,
            "DicomScpTimeout": 10,
        }
        if self.tls is not None:
            cfg.update(
                {
                    "DicomTlsEnabled": True,
                    "DicomTlsCertificate": str(self.tls.certificate),
                    "DicomTlsPrivateKey": str(self.tls.private_key),
                    "DicomTlsTrustedCertificates": str(self.tls.trusted_certificates),
                    "DicomTlsRemoteCertificateRequired": self.tls.remote_certificate_required,
                }
            )
        for key, value in self.config_overrides.items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        return cfg

    def prepare(self) -> None:
        cfg = self.config()
        Path(cfg["StorageDirectory"]).mkdir(parents=True, exist_ok=True)
        Path(cfg["IndexDirectory"]).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(cfg, indent=2))

    def command(self) -> list[str]:
        # Orthanc logs to stderr, which goes to `log_path`.
        return [require_binary(ORTHANC_BIN), str(self.config_path)]

    def wait_ready(self, deadline: float) -> None:
        # Orthanc opens its DICOM port, then its HTTP port; wait for both.
        if self.config().get("DicomServerEnabled", True):
            wait_for_tcp(self.ip, self.port, deadline, self.alive)
        if self.config().get("HttpServerEnabled", True):
            wait_for_tcp(self.ip, self.http_port, deadline, self.alive)

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self._credentials is not None:
            return self._credentials
        users = self.config().get("RegisteredUsers") or {}
        if users:
            user, password = next(iter(users.items()))
            return user, password
        return None

    def rest(self, method: str, path: str, body: bytes | None = None, *, auth: bool = True) -> Any:
        """Call Orthanc's REST API on its loopback address; JSON in, JSON out."""
        url = self.http_url + path
        request = urllib.request.Request(url, data=body, method=method)
        creds = self.credentials if auth else None
        if creds is not None:
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        if body is not None:
            request.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback only)
            data = response.read()
        return json.loads(data) if data else None

    def after_start(self) -> None:
        for path in self.load_files:
            try:
                self.rest("POST", "/instances", path.read_bytes())
            except urllib.error.HTTPError as exc:
                raise ServerError(f"Orthanc refused {path.name}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        self.loaded = self.statistics() if self.load_files else None

    def statistics(self) -> dict[str, Any]:
        return self.rest("GET", "/statistics")


# --- DCMTK dcmqrscp --------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A HostTable entry of dcmqrscp.cfg: a calling AE title allowed from a host."""

    ae_title: str
    host: str = "127.0.0.1"
    port: int = 104


class DcmqrscpServer(ManagedProcess):
    """DCMTK's Q/R archive with one storage area `ae_title` holding `load` files.

    `peers=None` writes `ANY` in the AETable (any calling AE, any host); a list of Peer restricts
    the area to those calling AE title/host pairs. dcmqrscp rejects a called AE title that is not
    in its AETable. Files are indexed with dcmqridx before start-up (no network needed).
    """

    name = "dcmqrscp"

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int | None = None,
        *,
        ae_title: str = "DCMQRSCP",
        peers: Sequence[Peer] | None = None,
        load: Iterable[Path] = (),
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(ip, port, **kwargs)
        self.ae_title = ae_title
        self.peers = list(peers) if peers is not None else None
        self.load_files = list(load)
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "dcmqrscp.cfg"
        self.area = self.storage_dir / "area"
        self._indexed = False

    def config_text(self) -> str:
        hosts = []
        if self.peers is None:
            allowed = "ANY"
        else:
            names = []
            for i, peer in enumerate(self.peers):
                name = f"peer{i}"
                hosts.append(f"{name} = ({peer.ae_title}, {peer.host}, {peer.port})")
                names.append(name)
            hosts.append(f"allowed = {', '.join(names)}")
            allowed = "allowed"
        return "\n".join(
            [
                f"NetworkTCPPort  = {self.port}",
                "MaxPDUSize      = 16384",
                "MaxAssociations = 16",
                "",
                "HostTable BEGIN",
                *hosts,
                "HostTable END",
                "",
                "VendorTable BEGIN",
                "VendorTable END",
                "",
                "AETable BEGIN",
                f"{self.ae_title} {self.area} RW (200, 1024mb) {allowed}",
                "AETable END",
                "",
            ]
        )

    def prepare(self) -> None:
        self.area.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        if not self._indexed and self.load_files:
            copies = []
            for path in self.load_files:
                target = self.area / path.name
                shutil.copyfile(path, target)
                copies.append(str(target))
            result = subprocess.run(
                [require_binary(DCMQRIDX_BIN), str(self.area), *copies], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise ServerError(f"dcmqridx failed: {result.stdout}\n{result.stderr}")
            self._indexed = True

    def command(self) -> list[str]:
        return [
            require_binary(DCMQRSCP_BIN),
            "--log-level", "info",
            "--config", str(self.config_path),
            *self.extra_args,
            str(self.port),
        ]


# --- DCMTK storescp --------------------------------------------------------------------------


class StorescpServer(ManagedProcess):
    """DCMTK's storage SCP (/usr/bin/storescp, never the pynetdicom shim on PATH)."""

    name = "storescp"

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int | None = None,
        *,
        ae_title: str = "STORESCP",
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(ip, port, **kwargs)
        self.ae_title = ae_title
        self.extra_args = list(extra_args)

    def command(self) -> list[str]:
        return [
            require_binary(STORESCP_BIN),
            "--log-level", "info",
            "--aetitle", self.ae_title,
            "--output-directory", str(self.storage_dir),
            *self.extra_args,
            str(self.port),
        ]
