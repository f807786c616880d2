"""Storage passwords stay secret: never printed, stored, put on a worker's or the dashboard's command line."""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ablate.cli.run as run_cli
import ablate.workers as workers_module
from ablate.cli import main
from ablate.identity import guard_identity
from ablate.redact import mask_document
from ablate.spec import load_study
from ablate.status import RunOutcome
from ablate.storage import STORAGE_ENV, mask_url, open_storage
from ablate.workers import spawn_workers

from .conftest import record_popen, write_study

FILE_PASSWORD = "SECRETPW"
FILE_URL = f"postgresql://ablate:{FILE_PASSWORD}@127.0.0.1/ablate_test"
OTHER_URL = "postgresql://ablate:OTHERPW@127.0.0.1/ablate_test"


@pytest.mark.parametrize("url,masked", [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # an unescaped @: the host follows the last one
    ("postgresql+psycopg://u:pa/ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://u@h/db?sslmode=require&PassWord=pw", "postgresql://u@h/db?sslmode=require&PassWord=***"),
    ("mysql://u@h/db?PASSWD=pw", "mysql://u@h/db?PASSWD=***"),
    ("postgresql://u:pw@h/db?password=pw2", "postgresql://u:***@h/db?password=***"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),  # nothing to hide: unchanged
    ("postgresql://h:5432/db", "postgresql://h:5432/db"),
    ("sqlite:///runs/x/optuna.db", "sqlite:///runs/x/optuna.db"),
    ("journal:runs/x/journal.log", "journal:runs/x/journal.log"),
])
def test_mask_url_forms(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_inside_a_message() -> None:
    text = "cannot open storage 'postgresql://bob:s3cret@db:5432/x': OperationalError; see the log"
    assert mask_url(text) == "cannot open storage 'postgresql://bob:***@db:5432/x': OperationalError; see the log"
    # two URLs on one line are masked as one: a password may itself hold '@h "x://' (too much, never too little)
    two = "cannot open storage 'postgresql://bob:s3cret@db:5432/x': OperationalError; also mysql://:pw2@h/y"
    assert mask_url(two) == "cannot open storage 'postgresql://bob:***@h/y"
    tricky = "storage 'postgresql://u:S3cr@h \"x://M1dx@127.0.0.1:1/db' failed"
    assert not _leaks(mask_url(tricky)) and "127.0.0.1:1/db" in mask_url(tricky)


def test_unreachable_storage_error_names_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, storage="postgresql://ablate:SECRETPW@127.0.0.1:1/none")
    for argv in (["run", str(path), "--quiet"], ["status", str(path)], ["report", str(path)],
                 ["dashboard", str(path), "--port", str(_free_port())]):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert FILE_PASSWORD not in out.out + out.err and "***" in out.err, argv


def test_stored_spec_has_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, storage=FILE_URL)
    study = load_study(path, storage=f"sqlite:///{tmp_path / 'x.db'}")
    final = guard_identity(study, open_storage(study.storage), allow_changed_spec=False)
    assert final.user_attrs["spec"]["storage"] == "postgresql://ablate:***@127.0.0.1/ablate_test"
    assert FILE_PASSWORD not in json.dumps(final.user_attrs)


def test_worker_argv_has_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, storage=FILE_URL)
    study = load_study(path, storage=OTHER_URL)
    calls = record_popen(monkeypatch)
    assert spawn_workers(study, [None, None], ("final",), False, False, None, progress=False) == 0
    assert len(calls) == 2
    for argv, env in calls:
        assert not any("SECRETPW" in a or "OTHERPW" in a for a in argv), argv
        assert env[STORAGE_ENV] == OTHER_URL  # the child reads it from its environment


def test_run_reads_storage_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$ABLATE_STORAGE is the worker's storage; --storage still wins over it, and both over the file."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, storage=FILE_URL)
    seen: list[str] = []

    def fake_run_study(study, **kwargs):
        seen.append(study.storage)
        return RunOutcome(study, ())

    monkeypatch.setattr(run_cli, "run_study", fake_run_study)
    monkeypatch.setenv(STORAGE_ENV, OTHER_URL)
    assert main(["run", str(path), "--quiet"]) == 0
    assert main(["run", str(path), "--quiet", "--storage", "sqlite:///x.db"]) == 0
    monkeypatch.delenv(STORAGE_ENV)
    assert main(["run", str(path), "--quiet"]) == 0
    assert seen == [OTHER_URL, "sqlite:///x.db", FILE_URL]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_runs_in_process_on_a_storage_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    import optuna_dashboard

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    optuna.create_study(study_name="somebody", storage=open_storage(url))
    path = write_study(tmp_path, storage=FILE_URL)
    served: list[tuple] = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kw: served.append((storage, kw)))
    monkeypatch.setattr(workers_module.subprocess, "Popen", lambda *a, **k: pytest.fail("started a subprocess"))
    port = _free_port()
    assert main(["dashboard", str(path), "--storage", url, "--port", str(port)]) == 0
    (storage, kw), = served
    assert isinstance(storage, optuna.storages.BaseStorage) and kw["port"] == port and kw["host"] == "127.0.0.1"
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out


@pytest.mark.parametrize("port", ["0", "65536", "http", "-3"])
def test_dashboard_bad_port_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, port: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    assert main(["dashboard", str(path), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--port" in err and "Traceback" not in err


def test_dashboard_port_in_use_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["dashboard", str(path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "--port" in err


# ----------------------------------------------------------------------------- a real run on PostgreSQL


def _storage_dump(url: str, prefix: str) -> str:
    """Every user and system attribute of every study named `prefix`* and of its trials, as JSON text."""
    storage = open_storage(url)
    out = []
    for summary in optuna.get_all_study_summaries(storage=storage):
        if not summary.study_name.startswith(prefix):
            continue
        sid = storage.get_study_id_from_name(summary.study_name)
        out.append({"study": summary.study_name, "user": storage.get_study_user_attrs(sid),
                    "system": storage.get_study_system_attrs(sid),
                    "trials": [{"user": t.user_attrs, "system": t.system_attrs, "params": t.params}
                               for t in storage.get_all_trials(sid, deepcopy=False)]})
    return json.dumps(out, default=str)


@pytest.mark.slow
def test_no_password_anywhere_after_a_real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    url = os.environ.get("ABLATE_TEST_POSTGRES")
    if not url:
        pytest.skip("no PostgreSQL server: set ABLATE_TEST_POSTGRES=postgresql://... (.ci/run starts one)")
    pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    real_password = make_url(url).password
    assert real_password and real_password != FILE_PASSWORD
    leaks = [FILE_PASSWORD, f":{real_password}@", url]  # the real URL's password, where it would sit in a URL
    monkeypatch.chdir(tmp_path)
    name = f"secret{os.getpid()}"
    path = write_study(tmp_path, name=name, storage=FILE_URL, runtime={"threads": 1})
    calls: list = []
    real_popen = workers_module.subprocess.Popen

    def spy(args, **kw):  # every process started (the workers too), its argv and environment recorded
        calls.append((list(args), kw.get("env") or {}))
        return real_popen(args, **kw)

    monkeypatch.setattr(workers_module.subprocess, "Popen", spy)
    assert main(["run", str(path), "--storage", url, "--workers", "2", "--quiet"]) == 0
    assert main(["report", str(path), "--storage", url, "--no-diagnostics"]) == 0
    printed = capsys.readouterr()
    workers = [env for argv, env in calls if argv[1:4] == ["-m", "ablate", "run"]]
    assert len(workers) == 2 and all(env[STORAGE_ENV] == url for env in workers)
    dump = _storage_dump(url, name)
    final_spec = json.loads(dump)  # the stored study document is there, with its storage masked
    assert any(s["user"].get("spec", {}).get("storage") == mask_url(FILE_URL) for s in final_spec)
    files = [p for p in (tmp_path / "reports" / name).rglob("*") if p.is_file()]
    assert any(p.name == "report.md" for p in files)
    texts = {"storage": dump, "stdout": printed.out, "stderr": printed.err,
             "argv of processes": json.dumps([argv for argv, _ in calls])}
    texts |= {str(p): p.read_bytes().decode("utf-8", "replace") for p in files}
    for where, text in texts.items():
        for secret in leaks:
            assert secret not in text, f"{secret!r} leaked in {where}"


# ----------------------------------------------------------------------------- passwords with any character

MARKERS = ("S3cr", "M1dx", "T9ke")  # every password below holds all three: finding one anywhere is a leak
ANY = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=16)  # printable ASCII, space included
NO_AMP = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="&"), max_size=16)
USERINFO = "postgresql://ablate:{pw}@127.0.0.1:1/ablate_test"
QUERY = ("postgresql://ablate@127.0.0.1:1/ablate_test?sslmode=disable&password={pw}",
         "postgresql://ablate@127.0.0.1:1/ablate_test?sslpassword={pw}&sslmode=disable")


def _password(a: str, b: str) -> str:
    return f"{MARKERS[0]}{a}{MARKERS[1]}{b}{MARKERS[2]}"


def _leaks(text: str) -> list[str]:
    return [m for m in MARKERS if m in text]


def _forms_of(url: str) -> list[str]:
    """The places a URL ends up: alone, quoted in a message, at a line's end, in a repr, twice on a line."""
    return [url, f"cannot open storage {url!r}: OperationalError", f"storage '{url}' does not exist; run it",
            f"x {url}\nnext line", f"{url} and {url}", f"(storage {url}) <{url}>"]


@given(a=ANY, b=ANY)
@settings(max_examples=300, deadline=None)
def test_a_userinfo_password_of_any_characters_is_masked(a: str, b: str) -> None:
    """A password in the userinfo may hold '@', '#', '?', '/', ':', spaces, quotes, '<', '>' and '%': the
    userinfo ends at the last '@', so nothing of it is left, and the host and database still show."""
    url = USERINFO.format(pw=_password(a, b))
    assert mask_url(url) == "postgresql://ablate:***@127.0.0.1:1/ablate_test"
    for text in _forms_of(url):
        masked = mask_url(text)
        assert not _leaks(masked), (text, masked)
        assert "127.0.0.1:1" in masked
        assert not _leaks(mask_url(text, [url]))
    assert not _leaks(json.dumps(mask_document({"storage": url, "nested": [{"url": url}], "password": "S3cr"})))


@given(a=NO_AMP, b=NO_AMP, form=st.sampled_from(QUERY))
@settings(max_examples=200, deadline=None)
def test_a_query_password_of_any_characters_is_masked(a: str, b: str, form: str) -> None:
    """`password=` and `sslpassword=` values run to the next `&key=` ('&' itself cannot be told from the
    next parameter unencoded), '#', '?' and '@' included; the other parameters stay readable."""
    url = form.format(pw=_password(a, b))
    masked = mask_url(url)
    assert not _leaks(masked) and "sslmode=disable" in masked and "127.0.0.1:1" in masked, masked
    for text in _forms_of(url):
        assert not _leaks(mask_url(text, [url])), text


def test_percent_encoded_and_decoded_forms_are_scrubbed() -> None:
    url = "postgresql://ablate:S3cr%20M1dx%40T9ke@127.0.0.1:1/db"
    message = "FATAL: password authentication failed: 'S3cr M1dx@T9ke' / S3cr%20M1dx%40T9ke"
    assert not _leaks(mask_url(message, [url]))


def _cli_texts(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.filterwarnings("ignore")
@given(a=ANY, b=ANY, via=st.sampled_from(["file", "option", "environment"]))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_command_prints_a_password_of_any_characters(a: str, b: str, via: str, capsys, monkeypatch) -> None:
    """Every command that opens storage, with the URL in the study file, on --storage or in $ABLATE_STORAGE,
    against a closed port: one error line (exit 2), and no piece of the password in stdout or stderr."""
    url = USERINFO.format(pw=_password(a, b))
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)
        path = write_study(Path(tmp), storage=url if via == "file" else "sqlite:///unused.db")
        extra = ["--storage", url] if via == "option" else []
        if via == "environment":
            monkeypatch.setenv(STORAGE_ENV, url)
        for argv in (["run", str(path), "--quiet"], ["status", str(path)], ["report", str(path)],
                     ["dashboard", str(path), "--port", str(_free_port())]):
            code, text = _cli_texts(argv + extra, capsys)
            assert code == 2 and not _leaks(text) and "***" in text, (argv, text)
            assert not Path(tmp, "unused.db").exists()  # the URL used was the one given, not the file's
        monkeypatch.delenv(STORAGE_ENV, raising=False)


@given(a=ANY, b=ANY)
@settings(max_examples=15, deadline=None)
def test_the_stored_spec_holds_no_password_of_any_characters(a: str, b: str) -> None:
    url = USERINFO.format(pw=_password(a, b))
    query_url = QUERY[1].format(pw=_password(a.replace("&", ""), b.replace("&", "")))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_study(Path(tmp), storage=url, description=f"see {query_url}")
        study = load_study(path, storage=f"sqlite:///{tmp}/x.db")
        final = guard_identity(study, open_storage(study.storage), allow_changed_spec=False)
        assert final.user_attrs["spec"]["storage"] == "postgresql://ablate:***@127.0.0.1:1/ablate_test"
        assert not _leaks(json.dumps(final.user_attrs))


def _dashboard_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A study file and a storage holding a study, with the dashboard's server replaced by a no-op."""
    import optuna_dashboard

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    optuna.create_study(study_name="somebody", storage=open_storage(url))
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kw: None)
    return write_study(tmp_path), url


def test_dashboard_on_every_interface_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path, url = _dashboard_study(tmp_path, monkeypatch)
    assert main(["dashboard", str(path), "--storage", url, "--host", "0.0.0.0", "--port", str(_free_port())]) == 0
    assert "without any password" in capsys.readouterr().err
    assert main(["dashboard", str(path), "--storage", url, "--port", str(_free_port())]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("code,hint,not_hint", [
    (errno.EADDRNOTAVAIL, "not an address of this machine", "another dashboard"),
    (errno.EADDRINUSE, "another dashboard", "not an address"),
    (errno.EACCES, "need privileges", "another dashboard"),
])
def test_dashboard_bind_failures_get_the_hint_of_their_cause(monkeypatch: pytest.MonkeyPatch, code: int, hint: str,
                                                             not_hint: str) -> None:
    """Binding fails for several reasons; each gets its own hint (a busy port is not an address this machine lacks)."""
    from ablate.cli import dashboard
    from ablate.errors import AblateError

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(dashboard.socket, "create_server", refuse)
    with pytest.raises(AblateError) as caught:
        dashboard.check_port("10.0.0.5", "18091")
    assert "cannot listen on 10.0.0.5:18091" in str(caught.value)
    assert hint in str(caught.value) and not_hint not in str(caught.value)


def test_dashboard_url_brackets_an_ipv6_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ablate.cli import dashboard

    path, url = _dashboard_study(tmp_path, monkeypatch)
    monkeypatch.setattr(dashboard, "check_port", lambda host, text: int(text))  # no IPv6 needed on this host
    assert main(["dashboard", str(path), "--storage", url, "--host", "::", "--port", "18091"]) == 0
    assert "at http://[::]:18091/" in capsys.readouterr().out
    assert dashboard.address("127.0.0.1", 8080) == "127.0.0.1:8080"
