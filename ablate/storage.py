"""Optuna storage from a URL, and the bookkeeping that makes work items run exactly once.

SQLite gets a busy timeout (several writers and a dashboard reader share one file), RDB storages
get heartbeats (a killed worker's RUNNING trial becomes FAIL), and a `journal:PATH` URL opens a
JournalFileBackend for shared filesystems. Every trial ablate runs records its worker
(host:pid); a RUNNING trial whose local process is gone is failed at once instead of waiting for
the heartbeat's grace period.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from .errors import AblateError

STORAGE_SCHEMES = (
    "sqlite:///", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://",
    "journal:",
)
HEARTBEAT_S = 20
GRACE_S = 90
WORKER_ATTR = "ablate:worker"
FAIL_ATTR = "fail_reason"
RETRY_ATTR = "ablate:retry"  # a FAIL that should be re-run (killed worker, interrupt)


def check_storage_url(url: str, where: str) -> str:
    if not isinstance(url, str) or not url.startswith(STORAGE_SCHEMES) or url in STORAGE_SCHEMES:
        raise AblateError(
            f"{where}: unsupported storage URL {mask_url(str(url))!r}; use sqlite:///PATH, "
            "postgresql://USER:PASS@HOST/DB, or journal:PATH (a JournalFileBackend file for shared filesystems)."
        )
    return url


def mask_url(url: str) -> str:
    """Hide the password of a database URL (postgresql://user:***@host/db)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def quiet_optuna() -> None:
    """Optuna warns that heartbeats are experimental and meant for optimize(); ablate uses both knowingly."""
    warnings.filterwarnings("ignore", message=".*heartbeat.*", category=Warning, module="optuna")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def worker_host() -> str:
    """This machine's name as workers record it (costs name the host they were timed on)."""
    return socket.gethostname()


def worker_id() -> str:
    return f"{worker_host()}:{os.getpid()}"


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage behind `url`; creates the SQLite/journal file's folder if needed."""
    check_storage_url(url, "storage")
    quiet_optuna()
    try:
        if url.startswith("journal:"):
            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs: dict = {}
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 120}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except AblateError:
        raise
    except Exception as err:  # sqlalchemy / driver errors: a bad URL or an unreachable server
        raise AblateError(f"cannot open storage {mask_url(url)!r}: {type(err).__name__}: {err}".split("\n")[0]) from None


def _local_process_gone(trial: FrozenTrial) -> bool:
    owner = str(trial.system_attrs.get(WORKER_ATTR, ""))
    host, _, pid = owner.rpartition(":")
    if host != worker_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker is dead (local pid gone, or heartbeat stale). Returns count."""
    storage = study._storage
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _local_process_gone(t):
            storage.set_trial_user_attr(t._trial_id, FAIL_ATTR, "worker process died (killed or crashed)")
            storage.set_trial_user_attr(t._trial_id, RETRY_ATTR, True)
            try:
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                reaped += 1
            except RuntimeError:
                pass  # finished by someone else meanwhile
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
    return reaped


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Record heartbeats for a trial run through ask/tell (optimize() does this by itself)."""
    if not isinstance(storage, RDBStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a transient DB error must not kill training
                pass
            stop.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
