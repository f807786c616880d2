"""`ablate dashboard STUDY`: optuna-dashboard on the study's storage, bound to 127.0.0.1 by default.

The server runs in this process on an opened storage object, so the storage URL (and its password)
never appears on a command line, where every user of the host could read it.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from ..errors import AblateError
from . import add_storage, add_study, storage_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="browse a study's trials in optuna-dashboard")
    add_study(p)
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", default="8080", help="TCP port, 1-65535 (default 8080)")
    p.set_defaults(func=run)


LOOPBACK = ("127.0.0.1", "localhost", "::1")  # addresses only this machine reaches


def check_port(host: str, text: str) -> int:
    """The port as an int, after binding it once: a bad or busy port is one clear error, not a server traceback."""
    try:
        port = int(text)
    except ValueError:
        raise AblateError(f"--port {text!r}: expected a whole number from 1 to 65535.") from None
    if not 1 <= port <= 65535:
        raise AblateError(f"--port {port}: expected a whole number from 1 to 65535.")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as err:
        raise AblateError(f"cannot listen on {address(host, port)} ({err.strerror or err}); {listen_hint(err)}") \
            from None
    return port


def listen_hint(err: OSError) -> str:
    """What to change when binding failed, by its cause (a busy port is not an address this machine lacks)."""
    if isinstance(err, socket.gaierror):
        return "--host is not a name or address this machine can resolve; give one of its addresses."
    if err.errno == errno.EADDRINUSE:
        return "is another dashboard (or server) using that port? Choose another --port."
    if err.errno == errno.EADDRNOTAVAIL:
        return ("--host is not an address of this machine; give one of its addresses, or 0.0.0.0 (or ::) for all of "
                "them.")
    if err.errno == errno.EACCES:
        return "ports below 1024 need privileges; choose a --port from 1024 to 65535."
    return "check --host and --port."


def address(host: str, port: int) -> str:
    """HOST:PORT as a URL writes it: an IPv6 address in brackets ([::1]:8080)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    from ..spec import load_study

    study = load_study(args.study, storage=storage_option(args))  # a bad file is refused before the web stack loads
    from optuna_dashboard import run_server

    from ..artifacts import artifact_dir, open_store
    from ..storage import mask_url, open_storage, storage_missing

    port = check_port(args.host, args.port)
    if storage_missing(study.storage):
        raise AblateError(f"storage {mask_url(study.storage)} holds nothing yet; run `ablate run {study.path}` first.")
    storage = open_storage(study.storage, read_only=True)
    folder = artifact_dir(study.storage, study.run_dir, study.artifacts)
    store = open_store(folder) if folder.is_dir() else None  # the report's attached files, where there are some
    print(f"optuna-dashboard for {study.name} ({mask_url(study.storage)}) at http://{address(args.host, port)}/",
          flush=True)
    if args.host not in LOOPBACK:
        print(f"warning: --host {args.host} serves this dashboard, without any password, to every machine that can "
              "reach this one: anyone there can read the study and change or delete its trials. Prefer the default "
              f"127.0.0.1 and an SSH tunnel (ssh -L {port}:127.0.0.1:{port} THIS_HOST).", file=sys.stderr, flush=True)
    try:
        run_server(storage, host=args.host, port=port, artifact_store=store)
    except KeyboardInterrupt:
        pass
    return 0
