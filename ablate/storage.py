"""Optuna storage from a URL, and the bookkeeping that makes work items run exactly once.

SQLite gets a busy timeout (several writers and a dashboard reader share one file), RDB storages
get heartbeats (a killed worker's RUNNING trial becomes FAIL), and a `journal:PATH` URL opens a
JournalFileBackend for shared filesystems. Every trial ablate runs records its worker
(host:pid); a RUNNING trial whose local process is gone is failed at once instead of waiting for
the heartbeat's grace period. Every wait on a database server is bounded (connect and statement
timeouts); `mask_url` (ablate.redact) hides passwords in anything printed or stored.

Environment: ABLATE_HOST overrides the host name workers record (two processes on one machine can
act as two hosts); ABLATE_HEARTBEAT_S and ABLATE_GRACE_S set the heartbeat interval (default 20 s)
and the grace period after which a silent RDB worker's trial counts as dead (default 90 s);
ABLATE_CONNECT_TIMEOUT_S (default 10 s) and ABLATE_STATEMENT_TIMEOUT_S (PostgreSQL, default 300 s) bound
the waits on a database server.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from .contract import FAIL_ATTR, RETRY_ATTR, stale_trial_ids, storage_of, trial_id_of, worker_host_pid, worker_label
from .errors import AblateError, EnvironmentFault, environment_fault
from .redact import mask_url, split_userinfo

STORAGE_SCHEMES = (
    "sqlite:///", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://",
    "journal:",
)
HEARTBEAT_S = 20  # default seconds between heartbeats (ABLATE_HEARTBEAT_S)
GRACE_S = 90  # default seconds without a heartbeat before a trial's worker counts as dead (ABLATE_GRACE_S)
STORAGE_ENV = "ABLATE_STORAGE"  # every command that opens storage reads its URL here when --storage is not given


CONNECT_TIMEOUT_S = 10  # default seconds to wait for a database server to answer (ABLATE_CONNECT_TIMEOUT_S)
STATEMENT_TIMEOUT_S = 300  # default seconds one SQL statement may run on PostgreSQL (ABLATE_STATEMENT_TIMEOUT_S)


def check_storage_url(url: str, where: str) -> str:
    """`url` when ablate can open it; refused when its scheme is unknown or its password would be misread."""
    if not isinstance(url, str) or not url.startswith(STORAGE_SCHEMES) or url in STORAGE_SCHEMES:
        raise AblateError(
            f"{where}: unsupported storage URL {mask_url(str(url))!r}; use sqlite:///PATH, "
            "postgresql://USER:PASS@HOST/DB, or journal:PATH (a JournalFileBackend file for shared filesystems)."
        )
    if url.startswith(("postgresql", "mysql")):
        _check_unambiguous(url, where)
    return url


def _check_unambiguous(url: str, where: str) -> None:
    """Refuse a server URL whose password SQLAlchemy would read differently from ablate's masking (an
    unencoded '@', '/', '?', '#' or ':' in it): the driver would then connect to a host named after part
    of the password and print that part in its error."""
    from urllib.parse import unquote

    _, user, password, rest = split_userinfo(url) or ("", None, None, "")
    try:
        parsed = sqlalchemy.engine.make_url(url)
        same = (parsed.password or None) == (unquote(password) if password else None) and (
            parsed.username or None) == (unquote(user) if user else None)
    except Exception:  # SQLAlchemy's own message may quote part of the password: never shown
        same = False
    problem = None if same else _address_problem(re.split(r"[/?#]", rest, maxsplit=1)[0])
    if problem is not None:
        raise AblateError(f"{where}: storage URL {mask_url(url)!r}: {problem}; write HOST[:PORT] or [IPV6][:PORT] "
                          "after the '@'.")
    if not same:
        raise AblateError(
            f"{where}: storage URL {mask_url(url)!r} cannot be read unambiguously: its user name or password holds "
            "characters that end a part of a URL. Percent-encode them in the password ('@' as %40, ':' as %3A, "
            "'/' as %2F, '?' as %3F, '#' as %23, '%' as %25), or keep the password out of the URL (PGPASSWORD, "
            "~/.pgpass)."
        )


def _address_problem(address: str) -> str | None:
    """What is wrong with a server URL's HOST[:PORT] (the text after its userinfo, which holds no password),
    else None."""
    host, port = address, None
    if address.startswith("["):
        host, bracket, after = address[1:].partition("]")
        if not bracket:
            return f"the IPv6 host {address!r} lacks its closing ']'"
        if after and not after.startswith(":"):
            return f"{after!r} follows the IPv6 host [{host}] where ':PORT' or nothing belongs"
        port = after[1:] if after else None
    elif ":" in address:
        host, _, port = address.rpartition(":")
        if ":" in host:
            return f"the host {host!r} holds ':' (an IPv6 address goes in brackets)"
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"the port {port!r} is not a number from 1 to 65535"
    return None


def storage_file(url: str) -> Path | None:
    """The file behind a SQLite or journal URL (None for a database server): the one place that reads a
    path out of a storage URL (opening, "not run yet", the artifact folder beside it, the report's check)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


def storage_missing(url: str) -> bool:
    """True when nothing has run on `url` yet: its SQLite/journal file, or Optuna's tables in it, do not
    exist. Only looks: creates nothing (a database is connected to and inspected)."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        return True
    if url.startswith("journal:"):
        return False
    with _driver_errors(url):  # an SQLite file or a server: does it hold Optuna's tables?
        engine = sqlalchemy.create_engine(url, **({} if path is not None else server_engine_kwargs(url)))
        try:
            return not sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()


@contextmanager
def _driver_errors(url: str) -> Iterator[None]:
    """sqlalchemy / driver errors (a bad URL, an unreachable server) as one masked line: EnvironmentFault
    (exit 1) for a fault of the environment (a read-only or full disk, a server that does not answer),
    else AblateError."""
    try:
        with environment_faults(url):
            yield
    except AblateError:
        raise
    except Exception as err:
        reason = mask_url(str(err).split("\n")[0], [url])
        raise AblateError(f"cannot open storage {mask_url(url)!r}: {type(err).__name__}: {reason}") from None


@contextmanager
def environment_faults(url: str | None, folder: Path | None = None) -> Iterator[None]:
    """A fault of the environment inside the block as one EnvironmentFault (exit 1) that names the storage
    (its file, or its server's masked URL), the `folder` written, and the timeout that ran out: deep in
    Optuna and the drivers an error carries none of them. Anything else passes through unchanged."""
    try:
        yield
    except AblateError:
        raise
    except Exception as err:
        place = None if url is None else str(storage_file(url) or mask_url(url))
        fault = environment_fault(err, storage=place, folder=None if folder is None else str(folder), waits=_waits())
        if fault is None:
            raise
        raise EnvironmentFault(fault) from None


def _waits() -> dict[str, int] | None:
    """The timeouts as set, for a message; None when a setting is bad (refused where it is used)."""
    try:
        return {"connect": connect_timeout(), "statement": statement_timeout()}
    except AblateError:
        return None


def _seconds_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise AblateError(f"${name} must be a whole number of seconds >= 1, got {text!r}.")
    return int(text)


def connect_timeout() -> int:
    """Seconds to wait for a database server's answer when connecting ($ABLATE_CONNECT_TIMEOUT_S, default 10)."""
    return _seconds_from_env("ABLATE_CONNECT_TIMEOUT_S", CONNECT_TIMEOUT_S)


def statement_timeout() -> int:
    """Seconds one SQL statement may run on PostgreSQL ($ABLATE_STATEMENT_TIMEOUT_S, default 300)."""
    return _seconds_from_env("ABLATE_STATEMENT_TIMEOUT_S", STATEMENT_TIMEOUT_S)


def server_engine_kwargs(url: str) -> dict:
    """SQLAlchemy engine arguments that bound every wait on a database server: a connect timeout, and on
    PostgreSQL a statement timeout ($ABLATE_STATEMENT_TIMEOUT_S, default 300) unless the URL sets options."""
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        connect: dict = {"connect_timeout": connect_timeout()}
        if "options=" not in url:
            statement_ms = 1000 * statement_timeout()
            connect["options"] = f"-c statement_timeout={statement_ms}"
        kwargs["connect_args"] = connect
    elif url.startswith("mysql"):
        kwargs["connect_args"] = {"connect_timeout": connect_timeout()}
    return kwargs


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats ($ABLATE_HEARTBEAT_S, default 20)."""
    return _seconds_from_env("ABLATE_HEARTBEAT_S", HEARTBEAT_S)


def grace_period() -> int:
    """Seconds without a heartbeat after which an RDB trial's worker counts as dead ($ABLATE_GRACE_S, default 90)."""
    return _seconds_from_env("ABLATE_GRACE_S", GRACE_S)


@contextmanager
def knowingly_experimental() -> Iterator[None]:
    """Optuna warns at every use of what it marks experimental (heartbeats, `fail_stale_trials`, which
    `optimize` calls with heartbeats on, metric names); ablate uses them knowingly. Only inside the block:
    a caller's own warning filters stay as they were."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@contextmanager
def optuna_info_off() -> Iterator[None]:
    """Optuna's INFO lines (each study created, each trial finished) off while ablate runs a study: ablate
    prints its own progress. Optuna's level is process-wide, so the caller's level is put back after."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def worker_host() -> str:
    """This machine's name as workers record it (costs name the host they were timed on).

    $ABLATE_HOST overrides it, so two processes on one machine can stand for two hosts.
    """
    return os.environ.get("ABLATE_HOST", "").strip() or socket.gethostname()


def worker_id() -> str:
    return worker_label(worker_host(), os.getpid())


def open_storage(url: str, *, read_only: bool = False) -> BaseStorage:
    """The Optuna storage behind `url`.

    Writers get the SQLite/journal file's folder created if needed. `read_only` (status, dashboard)
    never creates anything: a missing file is an error (check `storage_missing` first to say
    "not run yet") and a database server's tables are not created.
    """
    check_storage_url(url, "storage")
    if read_only and storage_missing(url):
        raise AblateError(f"storage {mask_url(url)!r} does not exist yet: nothing has run on it.")
    path = storage_file(url)
    with _driver_errors(url):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("journal:"):
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {"connect_args": {"timeout": 120}} if path is not None else server_engine_kwargs(url)
        return _rdb_storage(url, engine_kwargs, read_only)


SCHEMA_RACE_TRIES = 10


def _rdb_storage(url: str, engine_kwargs: dict, read_only: bool) -> RDBStorage:
    """RDBStorage, tolerating another process creating the same fresh database's tables right now.

    Two first opens at once (a worker and `ablate status`, two workers on one new file) race in
    Optuna's table creation: the loser sees "UNIQUE constraint failed: alembic_version", "table
    already exists" or (PostgreSQL) a duplicate key in the catalogue. The winner finishes within
    moments, so the loser waits and opens again.
    """
    for attempt in range(SCHEMA_RACE_TRIES):
        try:
            with knowingly_experimental():
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval(),
                                  grace_period=grace_period(), skip_table_creation=read_only)
        except sqlalchemy.exc.DatabaseError as err:
            text = str(err)
            racing = any(sign in text for sign in ("alembic_version", "already exists", "duplicate key"))
            if not racing or attempt == SCHEMA_RACE_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _local_process_gone(trial: FrozenTrial) -> bool:
    host, pid = worker_host_pid(trial)
    if host != worker_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def has_heartbeats(storage: BaseStorage) -> bool:
    """RDB storages record heartbeats, so a silent remote worker can be told from a slow one.

    Duck-typed: a study's storage is an RDBStorage wrapped in Optuna's private cache class.
    """
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def _is_local(trial: FrozenTrial) -> bool:
    return worker_host_pid(trial)[0] == worker_host()


def death_detectable(storage: BaseStorage, trial: FrozenTrial) -> bool:
    """Can this process tell when `trial`'s worker dies? (its pid is local, or the storage has heartbeats)"""
    return _is_local(trial) or has_heartbeats(storage)


def dead_trial_ids(study: optuna.Study) -> set[int]:
    """RUNNING trials whose worker is dead: local pid gone, or (RDB) no heartbeat within the grace period.

    Only reads storage: `ablate status` shows these as dead without failing them.
    """
    storage = storage_of(study)
    dead = {trial_id_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if _local_process_gone(t)}
    if has_heartbeats(storage):
        dead |= set(stale_trial_ids(study))  # a SELECT: compares heartbeats with now()
    return dead


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker is dead (local pid gone, or heartbeat stale). Returns count."""
    storage = storage_of(study)
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _local_process_gone(t):
            storage.set_trial_user_attr(trial_id_of(t), FAIL_ATTR, "worker process died (killed or crashed)")
            storage.set_trial_user_attr(trial_id_of(t), RETRY_ATTR, True)
            try:
                storage.set_trial_state_values(trial_id_of(t), TrialState.FAIL)
                reaped += 1
            except RuntimeError:
                pass  # finished by someone else meanwhile
    if has_heartbeats(storage):
        with knowingly_experimental():
            optuna.storages.fail_stale_trials(study)
    return reaped


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Record heartbeats for a trial run through ask/tell (optimize() does this by itself)."""
    if not has_heartbeats(storage):
        yield
        return
    stop = threading.Event()
    interval = storage.get_heartbeat_interval()

    def beat() -> None:
        while not stop.is_set():
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a transient DB error must not kill training
                pass
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
