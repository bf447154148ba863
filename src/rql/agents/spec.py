"""What the registry holds for each agent (``rql.agents.REGISTRY``); its own module so that the modules
that build entries (``rql.agents.extra`` and the suite methods) need not import the registry."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rql.agents.base import Agent


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    name: str
    description: str
    config_cls: type
    make: Callable[[Any, int, int], Agent]
    env_presets: Callable[[str], dict]
    network_presets: dict[str, dict]
    settings: str = "suite"
    """Name of the settings ``env_presets`` applies (the default of ``--settings``)."""
    alt_env_presets: dict[str, Callable[[str], dict]] = dataclasses.field(default_factory=dict)
    """Named alternative settings: ``task -> values`` (called with ``""`` when no task is given)."""

    @property
    def settings_names(self) -> tuple[str, ...]:
        return (self.settings, *self.alt_env_presets)
