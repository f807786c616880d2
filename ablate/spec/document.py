"""Reading a study file safely: a bounded regular file of UTF-8, parsed by a strict YAML loader.

Loading is safe (PyYAML's SafeLoader, no code from YAML) and refuses what parses but cannot be meant:
a key given twice (YAML keeps the last silently), anchors and aliases (nested aliases expand a small
file to gigabytes), non-UTF-8 or binary files, FIFOs and devices, files over 1 MiB. Every problem is
one line naming the file (and the line and column, for YAML errors).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from ..errors import AblateError

MAX_STUDY_BYTES = 1 << 20  # study files are a few KiB; a bigger file is a mistake (or an attack on the parser)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a study file never needs and PyYAML would accept silently.

    A key given twice is an error (PyYAML keeps the last one). Anchors and aliases are refused while
    composing, before anything is built or converted to a string: a few nested aliases ("billion
    laughs") expand a small file to gigabytes. The pure-Python loader, because the C one composes in C.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name, <<: *name) are not allowed in a study file; "
                "write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (YAML would keep only the last value)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_study_text(path: Path) -> str:
    """The file's text: a readable regular file of UTF-8 (a BOM is fine), with no NUL byte, under 1 MiB."""
    try:  # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise AblateError(f"{path}: not a regular file (a FIFO, device or socket); give a study file "
                                  "(studies/*.yaml).")
            os.set_blocking(fh.fileno(), True)
            data = fh.read(MAX_STUDY_BYTES + 1)
    except FileNotFoundError:
        raise AblateError(f"{path}: study file not found.") from None
    except IsADirectoryError:
        raise AblateError(f"{path}: is a folder; give a study file (studies/*.yaml).") from None
    except OSError as err:
        raise AblateError(f"{path}: cannot read the study file: {err.strerror or err}.") from None
    if len(data) > MAX_STUDY_BYTES:
        raise AblateError(f"{path}: larger than {MAX_STUDY_BYTES / 2**20:g} MiB; a study file is a short YAML file.")
    if b"\x00" in data:
        raise AblateError(f"{path}: not a UTF-8 text file (it holds NUL bytes: binary, or UTF-16/UTF-32 text); "
                          "save the study file as UTF-8 YAML.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AblateError(f"{path}: not a UTF-8 text file (byte 0x{data[err.start]:02x} at offset {err.start} is "
                          "not UTF-8); save the study file as UTF-8 YAML.") from None


def parse_yaml(text: str, path: Path) -> Any:
    """One YAML document through StrictLoader; every YAML error becomes one line naming the file and line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = "; ".join(str(p) for p in (err.context, err.problem) if p)
        raise AblateError(f"{path}{where}: invalid YAML: {problem}.") from None
    except yaml.reader.ReaderError as err:
        raise AblateError(f"{path}: invalid YAML: character #x{err.character:04x} at position {err.position} is "
                          "not allowed in YAML.") from None
    except yaml.YAMLError as err:
        raise AblateError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise AblateError(f"{path}: invalid YAML: nested too deeply for a study file.") from None
    except (ValueError, OverflowError) as err:  # a scalar PyYAML cannot build: a 5000-digit int, a 13th month
        raise AblateError(f"{path}: invalid YAML: a value cannot be read: {err}.") from None
