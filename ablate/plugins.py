"""Registries keyed by name that also take code from outside ablate: import paths and entry points.

A registry maps a name to a built-in object (an attention class, a backbone). Three ways add to it:
`register` (library use), an import path written where a name goes (`mypkg.attn:MyGate`, loaded on
first use) and an installed package's entry point in the registry's group (`pip install` makes its
names appear; the entry point's name is the key, loaded only when asked for). Whatever is loaded
keeps its `Source` (distribution, version, file hash), so a study's fingerprint changes when the
code of a module it trains changes, and the report can say which code produced its numbers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import AblateError, unknown

T = TypeVar("T")
IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_import_path(name: str) -> bool:
    """'pkg.mod:Attr' (what a study file writes for code outside ablate)."""
    return isinstance(name, str) and IMPORT_PATH.fullmatch(name) is not None


@dataclass(frozen=True)
class Source:
    """Where a plugin's code came from: enough to tell two versions of it apart."""

    name: str  # its key in the registry
    kind: str  # "attention" | "backbone"
    target: str  # 'pkg.mod:Attr'
    via: str  # "import path" | "entry point" | "register"
    package: str | None  # the installed distribution that holds the module (None: not installed, e.g. PYTHONPATH)
    version: str | None
    file: str | None
    sha256: str | None  # of the module's source file

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def module_source(module_name: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(distribution, version, file, sha256) of an imported module; None where unknown."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file and Path(file).is_file() else None
    top = module_name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    package = dists[0] if dists else None
    version = importlib.metadata.version(package) if package else None
    return package, version, file, digest


def load_target(target: str, kind: str) -> Any:
    """Import 'pkg.mod:Attr' and return Attr; an import that fails is a user error naming the target."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as err:  # noqa: BLE001  (the user's code: any import failure is reported, not a crash)
        raise AblateError(
            f"cannot load {kind} {target!r}: {type(err).__name__}: {err}. Install the package that holds "
            f"module {module_name!r} or put it on PYTHONPATH, and check the name after ':'."
        ) from None
    return obj


class Registry(Mapping[str, T], Generic[T]):
    """Name -> object, for built-ins, registered objects, import paths and entry points of `group`.

    `adapt(obj, target)` checks a loaded object and returns (its name, the object to store): a
    plugin's name comes from the object (e.g. its class attribute `name`), not from the path.
    """

    def __init__(self, kind: str, words: str, builtins: Mapping[str, T], group: str,
                 adapt: Callable[[Any, str], tuple[str, T]]) -> None:
        self.kind, self.words, self.group, self._adapt = kind, words, group, adapt
        self._items: dict[str, T] = dict(builtins)
        self._builtin = frozenset(builtins)
        self._sources: dict[str, Source] = {}
        self._aliases: dict[str, str] = {}  # import path -> name
        self._eps: dict[str, importlib.metadata.EntryPoint] | None = None  # read once: a scan of sys.path

    # -- Mapping -----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._items[self.resolve(name)]

    def __iter__(self) -> Iterator[str]:
        names = list(self._items) + [n for n in self._entry_points() if n not in self._items]
        return iter(names)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._aliases or name in self._entry_points())

    # -- names -------------------------------------------------------------------------------
    def is_builtin(self, name: str) -> bool:
        return name in self._builtin

    def resolve(self, name: str) -> str:
        """The registry key for `name`: itself, or the name of what an import path or entry point loads."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        if is_import_path(name):
            key = self._add(load_target(name, self.words), name, "import path")
            self._aliases[name] = key
            return key
        eps = self._entry_points()
        if name in eps:
            obj = self._load_entry_point(name, eps[name])
            return self._add(obj, eps[name].value, "entry point", expect=name)
        raise unknown(self.words, name, list(self))

    def register(self, obj: Any) -> str:
        """Library use: add `obj` (what an import path would load); returns its name."""
        module = getattr(obj, "__module__", type(obj).__module__)
        qualname = getattr(obj, "__qualname__", type(obj).__qualname__)
        return self._add(obj, f"{module}:{qualname}", "register")

    def sources(self) -> dict[str, Source]:
        """name -> Source of every plugin loaded so far."""
        return dict(self._sources)

    # -- internals ---------------------------------------------------------------------------
    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._eps is None:
            self._eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}
        return self._eps

    def _load_entry_point(self, name: str, ep: importlib.metadata.EntryPoint) -> Any:
        try:
            return ep.load()
        except Exception as err:  # noqa: BLE001  (the user's package: say which entry point failed and why)
            dist = getattr(ep.dist, "name", "?")
            raise AblateError(f"cannot load {self.words} {name!r} from entry point {ep.value!r} (group {self.group!r}, "
                              f"package {dist!r}): {type(err).__name__}: {err}.") from None

    def _add(self, obj: Any, target: str, via: str, expect: str | None = None) -> str:
        name, item = self._adapt(obj, target)
        if expect is not None and name != expect:
            raise AblateError(f"entry point {expect!r} (group {self.group!r}) loads {target!r}, whose name is "
                              f"{name!r}; the entry point's name and the {self.words}'s name must agree.")
        if name in self._items and self._items[name] is not item:
            where = "a built-in" if name in self._builtin else f"already loaded from {self._sources[name].target!r}"
            raise AblateError(f"{self.words} {target!r} is named {name!r}, which is {where}; give it another name.")
        if name not in self._items:
            package, version, file, digest = module_source(target.partition(":")[0])
            self._sources[name] = Source(name, self.kind, target, via, package, version, file, digest)
            self._items[name] = item
        return name

