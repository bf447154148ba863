"""Agents from outside the package: a file, an importable module, or an installed plugin.

``rql train --agent REF`` (and :func:`rql.train`) takes, besides a built-in name:

``path/to/my_agent.py``    a Python file (``path.py:NAME`` picks one of several agents in it)
``mypkg.my_agent``         an importable module (``mypkg.my_agent:NAME`` likewise)
``NAME``                   an agent of an installed plugin: a distribution that declares
                           ``[project.entry-points."rql.agents"] NAME = "mypkg.my_agent"`` (or
                           ``"mypkg.my_agent:SPEC"``) in its own ``pyproject.toml``

The file or module exposes its :class:`~rql.agents.spec.AgentSpec` entries as ``SPECS`` (a list),
``specs()`` (a function returning them), or simply as module-level ``AgentSpec`` values. A loaded
agent joins :data:`rql.agents.REGISTRY` under its spec's name, so every command finds it by that
name afterwards. A name that a built-in agent has is refused; so is one that another file or module
already registered in the same process.

Where an agent came from is recorded in each run's ``config.json`` as ``agent_source``: the file's
absolute path and SHA-256, or the module's name, its distribution's version and its file's SHA-256.
Resuming or evaluating a run loads the agent from that record and refuses, in one line, a file that
is missing or whose content changed, or a module whose version or content changed: a run is never
continued by another method than the one it was trained with.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import sys
import types

from rql.agents.spec import AgentSpec
from rql.errors import RQLError

GROUP = "rql.agents"
"""The entry-point group installed plugins declare their agents in."""

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

SOURCES: dict[str, dict] = {}
"""Where each agent loaded by this module came from (the record written to config.json)."""

REGISTRY: dict[str, AgentSpec] = {}
BUILTIN: frozenset = frozenset()


def bind(registry: dict, builtin: frozenset) -> None:
    """Use ``rql.agents.REGISTRY`` (which loaded agents join) and the built-in names (which they may not take)."""
    global REGISTRY, BUILTIN
    REGISTRY, BUILTIN = registry, builtin


def lookup(name: str) -> AgentSpec:
    """The registry entry of ``name``: a built-in or loaded agent, or an installed plugin's (loaded now)."""
    if name not in REGISTRY and (load_entry_point(name) is None or name not in REGISTRY):
        choices = sorted(set(REGISTRY) | set(entry_points()))
        raise RQLError(f"unknown agent '{name}'; choose one of: {', '.join(choices)}")
    return REGISTRY[name]


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``"a/b.py:name"`` -> ``("a/b.py", "name")``; a Windows drive letter is no selector."""
    head, sep, tail = ref.rpartition(":")
    if sep and tail and re.match(r"^[A-Za-z0-9_.-]+$", tail) and not (len(head) == 1 and head.isalpha()):
        return head, tail
    return ref, None


def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def specs_in(obj, where: str) -> list[AgentSpec]:
    """The agent entries ``obj`` offers: an ``AgentSpec``, a list of them, a function returning them,
    or a module with ``SPECS``, ``specs()`` or module-level ``AgentSpec`` values."""
    if isinstance(obj, types.ModuleType):
        if hasattr(obj, "SPECS"):
            obj = obj.SPECS
        elif callable(getattr(obj, "specs", None)):
            obj = obj.specs()
        else:
            obj = [v for v in vars(obj).values() if isinstance(v, AgentSpec)]
    elif callable(obj) and not isinstance(obj, AgentSpec):
        obj = obj()
    if isinstance(obj, AgentSpec):
        obj = [obj]
    try:
        specs = list(obj)
    except TypeError:
        specs = []
    if not specs or not all(isinstance(s, AgentSpec) for s in specs):
        raise RQLError(f"{where}: defines no agent; expose rql.agents.AgentSpec entries as SPECS = [...], a "
                       "specs() function, or module-level AgentSpec values (see docs/agents.md)")
    return specs


def _pick(specs: list[AgentSpec], name: str | None, where: str) -> AgentSpec:
    if name is None:
        if len(specs) == 1:
            return specs[0]
        raise RQLError(f"{where} defines the agents {', '.join(s.name for s in specs)}; pick one with "
                       f"--agent {where}:NAME")
    for s in specs:
        if s.name == name:
            return s
    raise RQLError(f"{where} defines no agent '{name}'; it defines {', '.join(s.name for s in specs)}")


def _register(specs: list[AgentSpec], source: dict, where: str) -> None:
    for s in specs:
        if s.name in BUILTIN:
            raise RQLError(f"{where}: agent name '{s.name}' is a built-in agent's; give the agent another name")
        old = SOURCES.get(s.name)
        if old is not None and not _same_source(old, source):
            raise RQLError(f"{where}: agent name '{s.name}' is already taken by the agent from {describe(old)}; "
                           "give one of them another name")
    for s in specs:
        REGISTRY[s.name] = s
        SOURCES[s.name] = source


def _same_source(a: dict, b: dict) -> bool:
    keys = ("kind", "path", "module", "sha256")
    return all(a.get(k) == b.get(k) for k in keys)


def describe(source: dict) -> str:
    """One phrase naming where an agent came from."""
    sha = (source.get("sha256") or "")[:12]
    if source.get("kind") == "file":
        return f"file {source.get('path')} (sha256 {sha})"
    version = source.get("version")
    what = "plugin" if source.get("kind") == "entry_point" else "module"
    return f"{what} {source.get('module')}" + (f" {version}" if version else "") + (f" (sha256 {sha})" if sha else "")


# ----------------------------------------------------------------------------- loading


def _exec_file(path: pathlib.Path, sha: str, code: bytes | None = None) -> types.ModuleType:
    """The module of a plugin file (kept in ``sys.modules`` so dataclasses and type hints resolve)."""
    modname = f"rql_plugin_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{sha[:12]}"
    if modname in sys.modules:
        return sys.modules[modname]
    module = types.ModuleType(modname)
    module.__file__ = str(path)
    sys.modules[modname] = module
    try:
        source = code if code is not None else path.read_bytes()
        exec(compile(source, str(path), "exec"), module.__dict__)
    except RQLError:
        del sys.modules[modname]
        raise
    except Exception as e:
        del sys.modules[modname]
        raise RQLError(f"{path}: the agent file failed to load ({type(e).__name__}: {e})") from None
    return module


def load_file(ref: str, code: bytes | None = None, recorded_path: str | None = None) -> str:
    """Register the agents of a Python file; returns the chosen agent's name. ``code`` (the file's bytes,
    as shipped to a sweep worker that may not see the file) is used in place of reading the file, and
    ``recorded_path`` is then the path it is recorded under."""
    file_ref, name = _split_ref(ref)
    path = pathlib.Path(recorded_path or file_ref).expanduser()
    if code is None:
        if not path.is_file():
            raise RQLError(f"--agent {file_ref}: no such file; give a built-in agent name, a Python file or a module")
        path = path.resolve()
        sha = _sha256(path)
    else:
        sha = hashlib.sha256(code).hexdigest()
    module = _exec_file(path, sha, code)
    specs = specs_in(module, str(file_ref))
    _register(specs, {"kind": "file", "path": str(path), "sha256": sha}, str(file_ref))
    return _pick(specs, name, str(file_ref)).name


def _module_record(module: types.ModuleType, kind: str, extra: dict | None = None) -> dict:
    top = module.__name__.split(".")[0]
    version = None
    try:
        dists = importlib.metadata.packages_distributions().get(top) or []
        if dists:
            version = importlib.metadata.version(dists[0])
    except Exception:
        version = None
    if version is None:
        version = getattr(sys.modules.get(top), "__version__", None)
    file = getattr(module, "__file__", None)
    sha = _sha256(pathlib.Path(file)) if file and pathlib.Path(file).is_file() else None
    return {"kind": kind, "module": module.__name__, "version": version, "sha256": sha, **(extra or {})}


def _import(modname: str, where: str) -> types.ModuleType:
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and (modname == e.name or modname.startswith(e.name + ".")):
            raise RQLError(f"{where}: no module named '{e.name}'") from None
        raise RQLError(f"{where}: the agent module failed to import (No module named '{e.name}')") from None
    except RQLError:
        raise
    except Exception as e:
        raise RQLError(f"{where}: the agent module failed to import ({type(e).__name__}: {e})") from None


def load_module(ref: str) -> str:
    """Register the agents of an importable module (``mod`` or ``mod:NAME``); returns the chosen name."""
    modname, name = _split_ref(ref)
    module = _import(modname, f"--agent {modname}")
    specs = specs_in(module, modname)
    _register(specs, _module_record(module, "module"), modname)
    return _pick(specs, name, modname).name


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed plugins' agents by name (not loaded)."""
    try:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}
    except Exception:
        return {}


def load_entry_point(name: str) -> str | None:
    """Register the plugin agent ``name`` if an installed distribution declares it; returns its name or None."""
    ep = entry_points().get(name)
    if ep is None:
        return None
    where = f"plugin '{name}' ({ep.value})"
    modname, _, attr = ep.value.partition(":")
    module = _import(modname.strip(), where)
    obj = module
    if attr:
        try:
            for part in attr.strip().split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise RQLError(f"{where}: {modname} has no attribute '{attr}'") from None
    specs = specs_in(obj, where)
    dist = getattr(ep, "dist", None)
    extra = {"entry_point": name, "distribution": dist.name if dist else None}
    record = _module_record(module, "entry_point", extra)
    if dist is not None:
        record["version"] = dist.version
    _register(specs, record, where)
    return _pick(specs, name if len(specs) > 1 else None, where).name


def resolve(ref: str) -> str:
    """The registry name of ``--agent REF``, loading the file, module or plugin it names."""
    if ref in REGISTRY:
        return ref
    if _looks_like_file(_split_ref(ref)[0]):
        return load_file(ref)
    loaded = load_entry_point(ref)
    if loaded is not None:
        return loaded
    if _MODULE_NAME.match(_split_ref(ref)[0]) and "." in _split_ref(ref)[0]:
        return load_module(ref)
    choices = sorted(set(REGISTRY) | set(entry_points()))
    raise RQLError(f"unknown agent '{ref}'; choose one of: {', '.join(choices)}; or give a Python file "
                   "(my_agent.py) or a module (mypkg.my_agent) that defines one")


# ----------------------------------------------------------------------------- runs


def source_of(name: str) -> dict | None:
    """The record of where agent ``name`` came from (None for a built-in agent)."""
    return SOURCES.get(name)


def shipped(name: str) -> dict | None:
    """The record of ``name`` with, for a file, its content (base64): what a sweep trial carries to a worker
    that may not see the file (a module must be importable on the worker)."""
    source = SOURCES.get(name)
    if source is None or source["kind"] != "file":
        return source
    return {**source, "code": base64.b64encode(pathlib.Path(source["path"]).read_bytes()).decode()}


def _found_module(recorded: dict, where: str, name: str) -> dict:
    if recorded["kind"] == "entry_point":
        ep = entry_points().get(recorded.get("entry_point") or name)
        if ep is None:
            raise RQLError(f"{where}: trained with agent '{name}' from {describe(recorded)}, which is no longer "
                           "installed; install it again to continue or evaluate this run")
        load_entry_point(ep.name)
    else:
        load_module(recorded["module"])
    return SOURCES[name] if name in SOURCES else {}


def ensure(name: str, recorded: dict | None, where: str) -> None:
    """Make agent ``name`` of a run available as it was when the run was trained (``recorded``: its
    ``agent_source``), or fail in one line saying what was recorded and what was found."""
    if recorded is None:  # a built-in agent (or a run from before agents could come from elsewhere)
        lookup(name)
        return
    kind = recorded.get("kind")
    have = SOURCES.get(name)
    if have is not None and _same_source(have, recorded):
        return
    if kind == "file":
        path = pathlib.Path(recorded["path"])
        if "code" in recorded:  # shipped with a sweep trial: the file as the driver read it
            code = base64.b64decode(recorded["code"])
            if hashlib.sha256(code).hexdigest() != recorded.get("sha256"):
                raise RQLError(f"{where}: the shipped agent file {path} does not match its recorded sha256")
            load_file(str(path), code=code, recorded_path=str(path))
        elif not path.is_file():
            raise RQLError(f"{where}: trained with agent '{name}' from {describe(recorded)}; that file is gone: "
                           "put it back to continue or evaluate this run")
        else:
            found = _sha256(path)
            if found != recorded.get("sha256"):
                raise RQLError(f"{where}: trained with agent '{name}' from {describe(recorded)}; the file now has "
                               f"sha256 {found[:12]}: restore the recorded file to continue or evaluate this run "
                               "(a changed method trains in a new run)")
            load_file(str(path))
    elif kind in ("module", "entry_point"):
        found = _found_module(recorded, where, name)
        for key in ("version", "sha256"):
            if recorded.get(key) and found.get(key) != recorded.get(key):
                raise RQLError(f"{where}: trained with agent '{name}' from {describe(recorded)}; found "
                               f"{describe(found)}: install the recorded version to continue or evaluate this run")
    else:
        raise RQLError(f"{where}: unreadable agent_source {recorded!r}")
    if name not in REGISTRY:
        raise RQLError(f"{where}: trained with agent '{name}', which {describe(recorded)} no longer defines")
