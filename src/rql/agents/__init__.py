"""The agent registry: every method selectable with ``rql train --agent NAME``.

Each entry gives the agent's config dataclass, ``make(config, obs_dim, action_dim)``, its
per-environment presets (picked from the task name) and its network-size presets. The
per-environment presets are named settings: ``env_presets`` is the default one (its name
``settings``, e.g. ``suite`` for the QAM suite's protocol) and ``alt_env_presets`` holds named
alternatives (e.g. ``fql-paper`` for FQL, IFQL and ReBRAC), chosen with ``rql train --settings``.
"""

from __future__ import annotations

import dataclasses

from rql.agents import plugins, presets
from rql.agents.base import Agent, AgentConfig, Batch
from rql.agents.fields import check_config
from rql.agents.spec import AgentSpec
from rql.errors import RQLError


def _registry() -> dict[str, AgentSpec]:
    from rql.agents import flow_bc
    from rql.agents import rql as rql_agent

    specs = [
        AgentSpec(
            "rql",
            "Reversal Q-Learning (the reference method)",
            rql_agent.RQLConfig,
            rql_agent.make,
            presets.rql_env_preset,
            {"small": presets.SMALL_FLOW, "reference": {}},
            settings="rql-paper",
        ),
        AgentSpec(
            "flow-bc",
            "flow-matching behaviour cloning only (the floor)",
            flow_bc.FlowBCConfig,
            flow_bc.make,
            presets.chunk_env_preset,
            {"small": presets.SMALL_ACTOR, "reference": {}},
            settings="rql-paper",
        ),
    ]
    from rql.agents import extra  # the baselines register themselves here

    specs.extend(extra.specs())
    return {s.name: s for s in specs}


REGISTRY = _registry()
"""Every agent by name: the built-in ones, then those loaded from files, modules and installed plugins
(:mod:`rql.agents.plugins`) as they are asked for."""

BUILTIN = frozenset(REGISTRY)
"""The names of the agents that ship with rql (a plugin may not take one)."""


plugins.bind(REGISTRY, BUILTIN)  # agents loaded from files, modules and plugins join REGISTRY


def get_spec(name: str) -> AgentSpec:
    """The registry entry of ``name``: a built-in or already loaded agent, or an installed plugin's."""
    return plugins.lookup(name)


def resolve_agent(ref: str) -> str:
    """The registry name of ``--agent REF``: a built-in name, a Python file (``my_agent.py``), a module
    (``mypkg.my_agent``) or an installed plugin's agent, loaded on first use (:mod:`rql.agents.plugins`)."""
    return plugins.resolve(ref)


def resolve_settings(agent: str, settings: str | None = None) -> str:
    """The name of the settings ``--settings`` picks for ``agent`` (its default when None)."""
    spec = get_spec(agent)
    if settings is None:
        return spec.settings
    if settings not in spec.settings_names:
        raise RQLError(
            f"unknown settings '{settings}' for agent '{agent}'; choose one of: {', '.join(spec.settings_names)}"
        )
    return settings


def build_config(agent: str, task: str | None, preset: str | None = None, overrides: dict | None = None,
                 settings: str | None = None):
    """Defaults, then the task's values under the named ``settings`` (the agent's default settings
    when None), then the network preset, then overrides. A config with a ``settings`` field records
    the name (an override ``settings`` picks them when the argument is None, as sweeps pass it).
    Every field is then checked against its declared range (:func:`rql.agents.fields.check_config`):
    a value outside it raises :class:`RQLError` with one line naming the field, the value and the range."""
    spec = get_spec(agent)
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    if settings is None and "settings" in fields:
        settings = overrides.pop("settings", None)
    name = resolve_settings(agent, settings)
    values = {}
    if name != spec.settings:
        values.update(spec.alt_env_presets[name](task or ""))
    elif task:
        values.update(spec.env_presets(task))
    if preset:
        if preset not in spec.network_presets:
            raise RQLError(
                f"unknown preset '{preset}' for agent '{agent}'; choose one of: {', '.join(spec.network_presets)}"
            )
        values.update(spec.network_presets[preset])
    values.update(overrides)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise RQLError(f"agent '{agent}' has no field(s) {', '.join(unknown)}; see 'rql train --agent {agent} --help'")
    if "settings" in fields:
        values["settings"] = name
    config = spec.config_cls(**values)
    check_config(config)  # each field's declared range (rql.agents.fields); one line naming the field
    return config


def typed_overrides(agent: str, values: dict) -> dict:
    """``values`` (from a sweep file, a command line or :func:`rql.train`'s ``agent_config``) as the agent's
    field types; one line for an unknown field or a value of the wrong type."""
    from rql.values import coerce, field_types, format_value

    types_ = field_types(get_spec(agent).config_cls)
    out = {}
    for field, value in values.items():
        if field not in types_:
            raise RQLError(f"agent '{agent}' has no field {field}; see 'rql train --agent {agent} --help'")
        try:
            out[field] = coerce(value, types_[field])
        except ValueError as e:
            raise RQLError(f"{agent}.{field}={format_value(value)}: expected {e}") from None
    return out


def make_agent(agent: str, config, obs_dim: int, action_dim: int) -> Agent:
    return get_spec(agent).make(config, obs_dim, action_dim)


__all__ = ["Agent", "AgentConfig", "AgentSpec", "BUILTIN", "Batch", "REGISTRY", "build_config", "check_config",
           "get_spec", "make_agent", "resolve_agent", "resolve_settings", "typed_overrides"]
