"""Keep every interop server and every connection on loopback.

Orthanc 1.10 and DCMTK 3.6.7 have no option to choose the address they listen on: both bind
the wildcard address (checked: no such key in `Orthanc --config`, no such flag in `dcmqrscp
--help`/`storescp --help`). A tiny LD_PRELOAD library rewrites their `bind()` to the one 127.x
address a test gave them, so every server really listens on loopback only, and each can have its
own 127.x address. Servers started here are also checked with psutil after start-up: a listener
on anything but loopback stops the test.

The audit hook below refuses, in this process, any `connect`/`sendto` to an address that is not
loopback (PEP 578 `socket.connect`/`socket.sendto` events), so a scanner bug cannot reach out of
the box during the interop tests. `guard_dir()` writes a `sitecustomize.py` that installs the same
hook in a subprocess (the CLI test puts it on PYTHONPATH).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

BIND_ENV = "PACSWATCH_TEST_BIND_ADDR"

_SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* bind() that moves any non-loopback IPv4 address (INADDR_ANY included) to $BIND_ENV and
   refuses non-loopback IPv6, so servers without a bind-address option stay on loopback. */
typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    const char *want = getenv("BIND_ENV");
    if (want && addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof sin);
        if ((ntohl(sin.sin_addr.s_addr) >> 24) != 127) {
            if (inet_pton(AF_INET, want, &sin.sin_addr) != 1) { errno = EADDRNOTAVAIL; return -1; }
        }
        return real_bind(fd, (const struct sockaddr *)&sin, sizeof sin);
    }
    if (want && addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 s6;
        memcpy(&s6, addr, sizeof s6);
        if (!IN6_IS_ADDR_LOOPBACK(&s6.sin6_addr)) { errno = EADDRNOTAVAIL; return -1; }
    }
    return real_bind(fd, addr, len);
}
""".replace("BIND_ENV", BIND_ENV)


class LoopbackError(AssertionError):
    pass


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def require_loopback(address: str) -> str:
    if not is_loopback(address):
        raise LoopbackError(f"{address!r} is not a loopback address: interop tests stay on 127.0.0.0/8")
    return address


def build_bind_shim(directory: Path) -> Path:
    """Compile the bind() shim into `directory` (once) and return the .so path.

    Raises RuntimeError with a clear message when no C compiler is installed."""
    directory.mkdir(parents=True, exist_ok=True)
    so = directory / "pw_loopback_bind.so"
    if so.exists():
        return so
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError(
            "interop tests need a C compiler (apt install gcc) to build the LD_PRELOAD shim that "
            "keeps Orthanc and DCMTK listening on loopback only (neither can choose its bind address)"
        )
    src = directory / "pw_loopback_bind.c"
    src.write_text(_SHIM_SOURCE)
    tmp = directory / f"pw_loopback_bind.{os.getpid()}.so"
    result = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(src), "-ldl"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the bind shim failed:\n{result.stderr}")
    tmp.replace(so)
    return so


def free_port(ip: str) -> int:
    """A port that is free on `ip` right now (the kernel picks it)."""
    require_loopback(ip)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


# --- the in-process guard --------------------------------------------------------------------

_GUARD_CODE = r'''
import ipaddress as _ipaddress, sys as _sys

def _pw_loopback_guard(event, args):
    if event not in ("socket.connect", "socket.sendto", "socket.bind"):
        return
    if not getattr(_sys, "_pacswatch_loopback_guard_active", True):
        return
    address = args[1] if len(args) > 1 else None
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return  # AF_UNIX paths and the like
    host = address[0].split("%")[0]
    if event == "socket.bind" and host in ("", "0.0.0.0", "::"):
        raise PermissionError(f"pacswatch interop guard: refusing wildcard bind to {address!r}")
    try:
        ok = _ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise PermissionError(f"pacswatch interop guard: refusing {event} to non-loopback {address!r}")

_sys.addaudithook(_pw_loopback_guard)

import os as _os
if _os.environ.get("PACSWATCH_GUARD_PROOF"):
    # Lets a test prove that the guard was loaded in its subprocess.
    with open(_os.environ["PACSWATCH_GUARD_PROOF"], "a") as _f:
        _f.write(f"guard active in pid {_os.getpid()}\n")
'''


def install_guard() -> None:
    """Install the loopback-only audit hook in this process, inactive until `guard_active(True)`.

    Audit hooks cannot be removed, and other test directories may rightly connect elsewhere
    (timeouts against TEST-NET addresses, say), so the hook is switched on only around interop
    tests."""
    if getattr(sys, "_pacswatch_loopback_guard_installed", False):
        return
    sys._pacswatch_loopback_guard_active = False  # type: ignore[attr-defined]
    exec(compile(_GUARD_CODE, "<pacswatch-loopback-guard>", "exec"), {"__name__": "pw_guard"})
    sys._pacswatch_loopback_guard_installed = True  # type: ignore[attr-defined]


def guard_active(active: bool) -> None:
    sys._pacswatch_loopback_guard_active = active  # type: ignore[attr-defined]


class LoopbackPool:
    """Hands out distinct 127.x addresses from one small network, so a single CIDR target
    covers every interop server. The third octet comes from the pid, so two test sessions on
    one machine do not share addresses (ports are picked free anyway)."""

    def __init__(self, second_octet: int = 88, prefix: int = 27) -> None:
        third = os.getpid() % 254 + 1
        self.network = ipaddress.ip_network(f"127.{second_octet}.{third}.0/{prefix}")
        self._hosts = iter(self.network.hosts())

    def next(self) -> str:
        try:
            return str(next(self._hosts))
        except StopIteration:
            raise RuntimeError(f"no addresses left in {self.network}") from None


def guard_dir(directory: Path) -> Path:
    """A directory holding a sitecustomize.py that installs the guard; put it on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_GUARD_CODE)
    return directory
