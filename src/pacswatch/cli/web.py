"""The dashboard's commands: `pacswatch serve` and `pacswatch users add|list|remove|passwd|token`,
and the dashboard of `pacswatch demo --serve` (serve_demo, which cli/lab.py's demo calls).

A command group of cli/ (its contract in cli/__init__.py). FastAPI and Uvicorn are imported by
the handlers, so building the parser stays quick.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from pathlib import Path

from pacswatch.cli import options
from pacswatch.cli.options import port

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ROLES = ("admin", "analyst", "viewer")


def register(sub) -> None:
    serve = sub.add_parser("serve", help="serve the dashboard (a web console on the same database)",
                           description="Serve the dashboard. It binds 127.0.0.1 unless told otherwise, and "
                                       "refuses an address other machines can reach without --tls-cert and "
                                       "--tls-key, or --insecure-public. Log in as a user of `pacswatch users add`.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind: an IP address, not a name "
                       "(default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    options.database(serve, create_dirs=False)
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="... and this private key (PEM)")
    serve.add_argument("--insecure-public", action="store_true",
                       help="allow a non-loopback address without TLS (e.g. behind a TLS proxy on the same host)")
    serve.add_argument("--secret-file", type=Path, metavar="FILE",
                       help="the key that signs sessions' CSRF tokens and mailed links (default: web-secret in "
                            "the user's data directory; made when missing)")
    serve.add_argument("--notify-config", type=Path, metavar="FILE", help="the notify configuration (SMTP, "
                       "sender), for the opt-out confirmation mails")
    serve.add_argument("--geoip", type=Path, metavar="FILE", help="a MaxMind-format country database (.mmdb): the "
                       "overview counts the exposed services by country")
    serve.set_defaults(handler=cmd_serve)

    users = sub.add_parser("users", help="accounts of the dashboard: add, list, remove, passwd, token")
    actions = users.add_subparsers(dest="users_command", required=True)
    add = actions.add_parser("add", help="add a user (password from a prompt or --password-file)")
    add.add_argument("name", help="the user name (letters, digits, . _ - @)")
    add.add_argument("--role", choices=ROLES, required=True, help="admin: everything; analyst: triage, cases, "
                     "scans; viewer: reads only")
    add.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from FILE's first line")
    passwd = actions.add_parser("passwd", help="set a user's password (their sessions end)")
    passwd.add_argument("name", help="the user whose password changes")
    passwd.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from FILE's first line")
    remove = actions.add_parser("remove", help="remove a user (their sessions and API tokens go too)")
    remove.add_argument("name", help="the user to remove")
    actions.add_parser("list", help="list the users and their roles")
    token = actions.add_parser("token", help="make an API token for a user (printed once)")
    token.add_argument("name", help="the user the token acts as (with their role)")
    token.add_argument("--label", help="what the token is for")
    for p in (add, passwd, remove, actions.choices["list"], token):
        options.database(p, create_dirs=False)
        p.set_defaults(handler=cmd_users)


# --- serve -----------------------------------------------------------------------------------------


def bind_refusal(host: str, *, tls: bool, insecure_public: bool) -> str | None:
    """Why `serve` must not bind `host`, or None. Only IP addresses are taken (a name would be
    resolved, and could mean anything); loopback is always fine, any other address needs TLS
    or the explicit --insecure-public."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"--host {host!r} is not an IP address: give one (127.0.0.1, ::1, 0.0.0.0, ...)"
    if address.is_loopback or tls or insecure_public:
        return None
    return (f"--host {host} can be reached from other machines: serve it over TLS (--tls-cert FILE --tls-key "
            "FILE), or say --insecure-public if a TLS proxy on this host fronts it")


def cmd_serve(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("serve", "--tls-cert and --tls-key go together")
    tls = args.tls_cert is not None
    if refusal := bind_refusal(args.host, tls=tls, insecure_public=args.insecure_public):
        return _fail("serve", refusal)
    import uvicorn

    from pacswatch.store.errors import StoreError
    from pacswatch.web.app import create_app
    from pacswatch.web.settings import WebSettings, secret_from_file

    secret_path = args.secret_file or _default_secret_path()
    try:
        settings = WebSettings(database_url=args.database, secret=secret_from_file(secret_path), tls=tls,
                               notify_config=args.notify_config, geoip_path=args.geoip)
        app = create_app(settings)
    except (StoreError, OSError, ValueError) as exc:  # ValueError: a GeoIP file that cannot be read
        return _fail("serve", str(exc))
    scheme = "https" if tls else "http"
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pacswatch serve: {scheme}://{where}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False,
                proxy_headers=False, ssl_certfile=str(args.tls_cert) if tls else None,
                ssl_keyfile=str(args.tls_key) if tls else None)
    return EXIT_OK


def _default_secret_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("pacswatch", appauthor=False)) / "web-secret"


# --- users -----------------------------------------------------------------------------------------


def read_password(path: Path | None) -> str:
    """The first line of `path`, or typed twice at a prompt (never an option: it would sit in the
    shell's history and the process list)."""
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: give --password-file FILE")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from pacswatch.store.engine import open_database
    from pacswatch.store.errors import StoreError
    from pacswatch.web import accounts
    from pacswatch.web.settings import utc_now

    try:
        engine = open_database(args.database)
    except StoreError as exc:
        return _fail("users", str(exc))
    try:
        action = args.users_command
        if action == "list":
            for row in accounts.list_users(engine):
                print(f"{row['name']}\t{row['role']}\tsince {row['created_at']:%Y-%m-%d}")
            return EXIT_OK
        if action == "add":
            user = accounts.add_user(engine, accounts.check_name(args.name), args.role,
                                     read_password(args.password_file), utc_now())
            print(f"user {user.name} added ({user.role})")
            return EXIT_OK
        if action == "passwd":
            if not accounts.set_password(engine, args.name, read_password(args.password_file), utc_now()):
                return _fail("users passwd", f"there is no user {args.name!r}", EXIT_FAILED)
            print(f"password of {args.name} changed; their sessions ended")
            return EXIT_OK
        if action == "remove":
            if not accounts.remove_user(engine, args.name):
                return _fail("users remove", f"there is no user {args.name!r}", EXIT_FAILED)
            print(f"user {args.name} removed")
            return EXIT_OK
        token = accounts.new_api_token(engine, args.name, utc_now(), args.label)
        print(token)
        print(f"(an API token for {args.name}: send it as 'Authorization: Bearer TOKEN'; it is not shown again)",
              file=sys.stderr)
        return EXIT_OK
    except (accounts.AccountError, ValueError, OSError) as exc:
        return _fail(f"users {args.users_command}", str(exc))
    finally:
        engine.dispose()


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    from pacswatch.output import error_line, stderr_console

    stderr_console().print(error_line(f"pacswatch {command}:", message), highlight=False, soft_wrap=True)
    return code


# --- demo --serve ----------------------------------------------------------------------------------


def serve_demo(database: str, network: str, *, port: int = 8000) -> int:
    """`pacswatch demo --serve`: the dashboard on the demo's database, on 127.0.0.1, with an owner
    for the lab's `network`, its cases and a demo user (web/demo.py), until Ctrl-C. A fresh
    secret: the demo's sessions and links end with it."""
    import uvicorn

    from pacswatch.web.app import create_app
    from pacswatch.web.demo import prepare
    from pacswatch.web.settings import WebSettings

    settings = WebSettings(database_url=database, public_name="pacswatch demo")
    app = create_app(settings)
    name, password = prepare(app.state.engine, network, settings.clock())
    print(f"\npacswatch demo: the dashboard is at http://127.0.0.1:{port}/ (Ctrl-C stops it and the lab)\n"
          f"  user {name}, password {password} (analyst; this demo database only)", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", server_header=False, proxy_headers=False)
    return EXIT_OK
