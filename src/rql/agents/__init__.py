"""The agent registry: every method selectable with ``rql train --agent NAME``.

Each entry gives the agent's config dataclass, ``make(config, obs_dim, action_dim)``, its
per-environment presets (picked from the task name) and its network-size presets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rql.agents import presets
from rql.agents.base import Agent, AgentConfig, Batch
from rql.errors import RQLError


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    name: str
    description: str
    config_cls: type
    make: Callable[[Any, int, int], Agent]
    env_presets: Callable[[str], dict]
    network_presets: dict[str, dict]


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
        ),
        AgentSpec(
            "flow-bc",
            "flow-matching behaviour cloning only (the floor)",
            flow_bc.FlowBCConfig,
            flow_bc.make,
            presets.chunk_env_preset,
            {"small": presets.SMALL_ACTOR, "reference": {}},
        ),
    ]
    from rql.agents import extra  # the baselines register themselves here

    specs.extend(extra.specs())
    return {s.name: s for s in specs}


REGISTRY = _registry()


def get_spec(name: str) -> AgentSpec:
    if name not in REGISTRY:
        raise RQLError(f"unknown agent '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_config(agent: str, task: str | None, preset: str | None = None, overrides: dict | None = None):
    """Defaults, then the task's published settings, then the network preset, then overrides."""
    spec = get_spec(agent)
    values = {}
    if task:
        values.update(spec.env_presets(task))
    if preset:
        if preset not in spec.network_presets:
            raise RQLError(
                f"unknown preset '{preset}' for agent '{agent}'; choose one of: {', '.join(spec.network_presets)}"
            )
        values.update(spec.network_presets[preset])
    values.update(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise RQLError(f"agent '{agent}' has no field(s) {', '.join(unknown)}; see 'rql train --agent {agent} --help'")
    return spec.config_cls(**values)


def make_agent(agent: str, config, obs_dim: int, action_dim: int) -> Agent:
    return get_spec(agent).make(config, obs_dim, action_dim)


__all__ = ["Agent", "AgentConfig", "AgentSpec", "Batch", "REGISTRY", "build_config", "get_spec", "make_agent"]
