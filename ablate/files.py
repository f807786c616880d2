"""Where and how ablate writes files: complete or absent, and never over what is not its own.

Atomic writes: every file ablate writes (reports, checkpoints, dataset files) is complete or absent.

The data is written to a new temporary file in the destination's folder and renamed into place
(os.replace is atomic within a file system); the temporary file gets the permissions the user's
umask gives, as open() would, not mkstemp's private 0600, so a team can read what one member wrote.

Output paths: a path ablate writes a checkpoint, a report or a JSON file to is either new or a file
ablate made (a checkpoint that decodes as one, a report folder with ablate's marker, a JSON file with
ablate's key); anything else is refused before any work starts (`check_output_file`,
`check_report_folder`), so ablate never renames or overwrites a user's file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import AblateError


def new_temp(path: Path) -> Path:
    """A new, empty, uniquely named file beside `path`, with mode 0o666 & ~umask.

    The kernel applies the umask to O_CREAT's mode, so nothing reads or sets the process umask
    (os.umask can only be read by setting it, a race with other threads); O_EXCL makes the name ours.
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a new file beside `path`, then rename it into place: a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------
# where ablate may write: the one home for output-path checks (report folders, checkpoints, JSON, tables)

REPORTS_DIR = Path("reports")  # every report folder lives under it
REPORT_MARKER = ".ablate-study"  # names the study a report folder belongs to
_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # new_temp's names


def check_report_dir(value: object, where: str) -> Path:
    """A report folder: a relative path under reports/, at least one level down, that resolves inside it.

    Never '.', the project root or reports/ itself (they hold other things, and a report removes the
    files its previous run wrote), never '..' or a symlink out. Another study's folder is refused by
    `check_report_folder` when written.
    """
    path = Path(value) if isinstance(value, (str, Path)) and "\x00" not in str(value) else None
    ok = (path is not None and not path.is_absolute() and ".." not in path.parts and len(path.parts) >= 2
          and path.parts[0] == REPORTS_DIR.name)
    if ok and path is not None:
        try:
            ok = (Path.cwd() / REPORTS_DIR).resolve() in (Path.cwd() / path).resolve().parents
        except (OSError, RuntimeError):  # a symlink loop
            ok = False
    if not ok or path is None:
        raise AblateError(f"{where}: {str(value)!r} is not a report folder: give a relative path without '..' "
                          f"under {REPORTS_DIR}/ (e.g. {REPORTS_DIR}/my_study); never '.', the project root or "
                          f"{REPORTS_DIR}/ itself.")
    return path


def _owner(folder: Path) -> str | None:
    """The study named by `folder`'s marker file, None when it has none."""
    try:
        return (folder / REPORT_MARKER).read_text(encoding="utf-8", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise AblateError(f"{folder}: cannot read its {REPORT_MARKER} marker: {err.strerror or err}.") from None


def check_report_folder(out: Path, study: str) -> None:
    """Refuse a report folder that is not this study's: another study's marker (in it or a folder above),
    an existing folder with files but no marker (someone else's), a file where the folder should be,
    and a place nothing can be written to. Writes nothing."""
    for folder in (out, *out.parents):
        owner = _owner(folder)
        if owner is not None and owner != study:
            raise AblateError(f"{out}: {folder} holds the report of study {owner!r} (its {REPORT_MARKER} says so); "
                              f"study {study!r} will not overwrite it: choose another folder under reports/.")
    if out.is_dir() and _owner(out) is None and any(not _TEMP.match(p.name) for p in out.iterdir()):
        raise AblateError(f"{out}: this folder holds files that ablate did not write (it has no {REPORT_MARKER} "
                          "marker); a report will not overwrite them: choose a new folder under reports/.")
    writable_parent(out, "report folder", folder=True)


def mark_report_folder(out: Path, study: str) -> None:
    """Record that `out` holds the report of `study`: written before its first file, so a report that
    is killed midway leaves a folder the next report recognises as its own."""
    atomic_write(out / REPORT_MARKER, lambda tmp: tmp.write_text(study + "\n", encoding="utf-8"))


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files a killed write left in `folder` and below (only new_temp's names)."""
    removed = 0
    for path in folder.rglob(".*.tmp") if folder.is_dir() else ():
        if _TEMP.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def writable_parent(path: Path, what: str, folder: bool = False) -> None:
    """`path` can be created or replaced: the nearest existing folder at or above it is a writable folder
    (and `path` itself, when it exists and `folder` is set, is a folder)."""
    existing = path
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as err:  # e.g. a name longer than the file system allows
        raise AblateError(f"{path}: cannot be a {what}: {err.strerror or err}.") from None
    if not existing.is_dir() and (existing != path or folder):
        raise AblateError(f"{path}: {existing} is a file, not a folder; choose another {what} path.")
    target = existing if existing.is_dir() else existing.parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise AblateError(f"{path}: cannot write the {what}: {target} is read-only for this user.")


def check_output_file(path: Path, where: str, what: str, ours: Callable[[Path], bool]) -> Path:
    """A file ablate is about to write (a checkpoint, a JSON or table file): new, or one ablate made.

    `ours(path)` recognises ablate's own files (a checkpoint that decodes as one, a JSON file with
    ablate's key); anything else existing there (a user's file, a folder, a FIFO or device) is refused,
    so ablate never renames or overwrites what is not its own. Writes nothing.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # new (or under a file, which writable_parent names)
        writable_parent(path, what)
        return path
    except OSError as err:
        raise AblateError(f"{where} {path}: cannot be used as a {what}: {err.strerror or err}.") from None
    if stat.S_ISDIR(mode):
        raise AblateError(f"{where} {path}: is a folder; give a file name for the {what}.")
    if not stat.S_ISREG(mode):
        raise AblateError(f"{where} {path}: is not a regular file (a FIFO, device or socket); give a new file name "
                          f"for the {what}.")
    if not ours(path):
        raise AblateError(f"{where} {path}: this file exists and ablate did not write it (it is no {what} of "
                          "ablate's); ablate will not overwrite or rename it. Choose a new path, or delete it first.")
    writable_parent(path, what)
    return path


JSON_KEY = "ablate"  # every JSON file ablate writes carries this key: it names the command that wrote it


def is_ablate_json(path: Path) -> bool:
    """A JSON file ablate wrote: an object holding JSON_KEY (read at most 64 MB)."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(64 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and JSON_KEY in data


def first_line_matches(pattern: str) -> Callable[[Path], bool]:
    """Recognises a table file ablate wrote by its first line (a regular expression matched at its start)."""
    regex = re.compile(pattern)

    def ours(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return regex.match(fh.readline(4096)) is not None
        except OSError:
            return False
    return ours
