"""The comparison protocol of the RQL paper: the settings of the QAM suite (Li and Levine, 2026).

The RQL paper compares against the offline flow-RL methods of that suite, each run with one set of
common settings and the method's own per-environment values (the suite's public
``experiments/reproduce.py``). ``--task`` applies them to every method the suite has:

common    10 critics aggregated as ``mean - rho * std`` (``rho`` 0.5; 0 on humanoidmaze), 4x512
          networks with LayerNorm in the value networks, batch 256, action chunks of 5 with chunked
          critics on manipulation and 1 on locomotion, discount 0.995 on giant and humanoidmaze
          (0.99 elsewhere), sparse rewards on scene and puzzle
per env   ``METHOD_ENV[method][family]`` below, in the suite's own field names

cube-single is not in the suite; it takes cube-double's values (our choice, as for RQL).
"""

from __future__ import annotations

from typing import Callable

from rql.agents import presets

MANIPULATION = ("cube", "scene", "puzzle")

# Families outside the suite that take another family's per-environment values.
FAMILY_ALIAS = {"cube-single": "cube-double"}

# Per-environment values of each method, from the suite's reproduce script (its 16 offline methods;
# names are the lower case of the published names: CGQL-M is CGQL's 'mse' mode, CGQL-L its 'linex'
# mode, QAM-E and QAM-F QAM's edit and FQL variants; the variant itself is the agent's name).
METHOD_ENV: dict[str, dict[str, dict]] = {
    "fbrac": {
        "antmaze-large": dict(alpha=0.1),
        "antmaze-giant": dict(alpha=0.1),
        "humanoidmaze-medium": dict(alpha=30.0),
        "humanoidmaze-large": dict(alpha=10.0),
        "cube-double": dict(alpha=0.1),
        "cube-triple": dict(alpha=0.03),
        "cube-quadruple": dict(alpha=1.0),
        "scene": dict(alpha=100.0),
        "puzzle-3x3": dict(alpha=0.03),
        "puzzle-4x4": dict(alpha=0.3),
    },
    "ifql": {
        "antmaze-large": dict(kappa=0.9),
        "antmaze-giant": dict(kappa=0.8),
        "humanoidmaze-medium": dict(kappa=0.7),
        "humanoidmaze-large": dict(kappa=0.8),
        "cube-double": dict(kappa=0.9),
        "cube-triple": dict(kappa=0.95),
        "cube-quadruple": dict(kappa=0.95),
        "scene": dict(kappa=0.9),
        "puzzle-3x3": dict(kappa=0.95),
        "puzzle-4x4": dict(kappa=0.9),
    },
    "cgql": {
        "antmaze-large": dict(inv_temp=10.0, guidance_coef=0.1),
        "antmaze-giant": dict(inv_temp=10.0, guidance_coef=0.1),
        "humanoidmaze-medium": dict(inv_temp=10.0, guidance_coef=0.01),
        "humanoidmaze-large": dict(inv_temp=10.0, guidance_coef=0.01),
        "cube-double": dict(inv_temp=10.0, guidance_coef=0.01),
        "cube-triple": dict(inv_temp=10.0, guidance_coef=0.1),
        "cube-quadruple": dict(inv_temp=10.0, guidance_coef=0.1),
        "scene": dict(inv_temp=10.0, guidance_coef=0.1),
        "puzzle-3x3": dict(inv_temp=10.0, guidance_coef=0.1),
        "puzzle-4x4": dict(inv_temp=10.0, guidance_coef=0.1),
    },
    "cgql-m": {
        "antmaze-large": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "antmaze-giant": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "humanoidmaze-medium": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "humanoidmaze-large": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "cube-double": dict(inv_temp=10.0, guidance_coef=0.01, noisy_coef=0.001),
        "cube-triple": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "cube-quadruple": dict(inv_temp=10.0, guidance_coef=0.01, noisy_coef=0.1),
        "scene": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "puzzle-3x3": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "puzzle-4x4": dict(inv_temp=10.0, guidance_coef=1.0, noisy_coef=0.001),
    },
    "cgql-l": {
        "antmaze-large": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "antmaze-giant": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "humanoidmaze-medium": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "humanoidmaze-large": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "cube-double": dict(inv_temp=10.0, guidance_coef=0.01, noisy_coef=0.001),
        "cube-triple": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "cube-quadruple": dict(inv_temp=10.0, guidance_coef=0.01, noisy_coef=0.1),
        "scene": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.1),
        "puzzle-3x3": dict(inv_temp=10.0, guidance_coef=0.1, noisy_coef=0.001),
        "puzzle-4x4": dict(inv_temp=10.0, guidance_coef=1.0, noisy_coef=0.001),
    },
    "dsrl": {
        "antmaze-large": dict(noise_scale=0.8),
        "antmaze-giant": dict(noise_scale=1.2),
        "humanoidmaze-medium": dict(noise_scale=0.6),
        "humanoidmaze-large": dict(noise_scale=0.8),
        "cube-double": dict(noise_scale=1.0),
        "cube-triple": dict(noise_scale=1.4),
        "cube-quadruple": dict(noise_scale=1.4),
        "scene": dict(noise_scale=0.4),
        "puzzle-3x3": dict(noise_scale=1.0),
        "puzzle-4x4": dict(noise_scale=1.0),
    },
    "fedit": {
        "antmaze-large": dict(edit_scale=0.2),
        "antmaze-giant": dict(edit_scale=0.3),
        "humanoidmaze-medium": dict(edit_scale=0.5),
        "humanoidmaze-large": dict(edit_scale=0.1),
        "cube-double": dict(edit_scale=0.2),
        "cube-triple": dict(edit_scale=0.3),
        "cube-quadruple": dict(edit_scale=0.4),
        "scene": dict(edit_scale=0.2),
        "puzzle-3x3": dict(edit_scale=0.2),
        "puzzle-4x4": dict(edit_scale=0.8),
    },
    "fql": {
        "antmaze-large": dict(alpha=3.0),
        "antmaze-giant": dict(alpha=3.0),
        "humanoidmaze-medium": dict(alpha=30.0),
        "humanoidmaze-large": dict(alpha=30.0),
        "cube-double": dict(alpha=300.0),
        "cube-triple": dict(alpha=30.0),
        "cube-quadruple": dict(alpha=100.0),
        "scene": dict(alpha=300.0),
        "puzzle-3x3": dict(alpha=300.0),
        "puzzle-4x4": dict(alpha=1.0),
    },
    "fawac": {
        "antmaze-large": dict(inv_temp=6.4),
        "antmaze-giant": dict(inv_temp=0.8),
        "humanoidmaze-medium": dict(inv_temp=6.4),
        "humanoidmaze-large": dict(inv_temp=0.8),
        "cube-double": dict(inv_temp=0.8),
        "cube-triple": dict(inv_temp=0.8),
        "cube-quadruple": dict(inv_temp=0.8),
        "scene": dict(inv_temp=6.4),
        "puzzle-3x3": dict(inv_temp=0.8),
        "puzzle-4x4": dict(inv_temp=0.8),
    },
    "qam": {
        "antmaze-large": dict(inv_temp=10.0, fql_alpha=0.0, edit_scale=0.0),
        "antmaze-giant": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "humanoidmaze-medium": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "humanoidmaze-large": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "cube-double": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "cube-triple": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "cube-quadruple": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "scene": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "puzzle-3x3": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "puzzle-4x4": dict(inv_temp=30.0, fql_alpha=0.0, edit_scale=0.0),
    },
    "qam-e": {
        "antmaze-large": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.1),
        "antmaze-giant": dict(inv_temp=10.0, fql_alpha=0.0, edit_scale=0.1),
        "humanoidmaze-medium": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.1),
        "humanoidmaze-large": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.1),
        "cube-double": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "cube-triple": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.1),
        "cube-quadruple": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.1),
        "scene": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "puzzle-3x3": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.1),
        "puzzle-4x4": dict(inv_temp=0.1, fql_alpha=0.0, edit_scale=0.9),
    },
    "qam-f": {
        "antmaze-large": dict(inv_temp=3.0, fql_alpha=30.0, edit_scale=0.0),
        "antmaze-giant": dict(inv_temp=3.0, fql_alpha=30.0, edit_scale=0.0),
        "humanoidmaze-medium": dict(inv_temp=1.0, fql_alpha=30.0, edit_scale=0.0),
        "humanoidmaze-large": dict(inv_temp=0.3, fql_alpha=30.0, edit_scale=0.0),
        "cube-double": dict(inv_temp=1.0, fql_alpha=0.0, edit_scale=0.0),
        "cube-triple": dict(inv_temp=10.0, fql_alpha=300.0, edit_scale=0.0),
        "cube-quadruple": dict(inv_temp=0.3, fql_alpha=30.0, edit_scale=0.0),
        "scene": dict(inv_temp=1.0, fql_alpha=300.0, edit_scale=0.0),
        "puzzle-3x3": dict(inv_temp=3.0, fql_alpha=0.0, edit_scale=0.0),
        "puzzle-4x4": dict(inv_temp=3.0, fql_alpha=3.0, edit_scale=0.0),
    },
    "rebrac": {
        "antmaze-large": dict(alpha_actor=0.01, actor_noise=0.0),
        "antmaze-giant": dict(alpha_actor=0.01, actor_noise=0.0),
        "humanoidmaze-medium": dict(alpha_actor=0.01, actor_noise=0.0),
        "humanoidmaze-large": dict(alpha_actor=0.01, actor_noise=0.1),
        "cube-double": dict(alpha_actor=0.01, actor_noise=0.0),
        "cube-triple": dict(alpha_actor=0.01, actor_noise=0.2),
        "cube-quadruple": dict(alpha_actor=0.01, actor_noise=0.2),
        "scene": dict(alpha_actor=0.03, actor_noise=0.0),
        "puzzle-3x3": dict(alpha_actor=0.1, actor_noise=0.0),
        "puzzle-4x4": dict(alpha_actor=0.01, actor_noise=0.2),
    },
    "bam": {
        "antmaze-large": dict(inv_temp=30.0),
        "antmaze-giant": dict(inv_temp=30.0),
        "humanoidmaze-medium": dict(inv_temp=10.0),
        "humanoidmaze-large": dict(inv_temp=30.0),
        "cube-double": dict(inv_temp=10.0),
        "cube-triple": dict(inv_temp=30.0),
        "cube-quadruple": dict(inv_temp=10.0),
        "scene": dict(inv_temp=10.0),
        "puzzle-3x3": dict(inv_temp=10.0),
        "puzzle-4x4": dict(inv_temp=30.0),
    },
    "qsm": {
        "antmaze-large": dict(inv_temp=10.0, alpha=10.0, clip_sampler_before=False, clip_sampler_after=True),
        "antmaze-giant": dict(inv_temp=10.0, alpha=10.0, clip_sampler_before=False, clip_sampler_after=True),
        "humanoidmaze-medium": dict(inv_temp=10.0, alpha=30.0, clip_sampler_before=False, clip_sampler_after=True),
        "humanoidmaze-large": dict(inv_temp=10.0, alpha=30.0, clip_sampler_before=False, clip_sampler_after=True),
        "cube-double": dict(inv_temp=1.0, alpha=10.0, clip_sampler_before=False, clip_sampler_after=True),
        "cube-triple": dict(inv_temp=10.0, alpha=10.0, clip_sampler_before=False, clip_sampler_after=True),
        "cube-quadruple": dict(inv_temp=1.0, alpha=10.0, clip_sampler_before=False, clip_sampler_after=True),
        "scene": dict(inv_temp=3.0, alpha=30.0, clip_sampler_before=False, clip_sampler_after=True),
        "puzzle-3x3": dict(inv_temp=10.0, alpha=30.0, clip_sampler_before=False, clip_sampler_after=True),
        "puzzle-4x4": dict(inv_temp=10.0, alpha=1.0, clip_sampler_before=False, clip_sampler_after=True),
    },
    "dac": {
        "antmaze-large": dict(alpha=0.3, clip_sampler_before=True, clip_sampler_after=False),
        "antmaze-giant": dict(alpha=0.3, clip_sampler_before=True, clip_sampler_after=False),
        "humanoidmaze-medium": dict(alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
        "humanoidmaze-large": dict(alpha=0.3, clip_sampler_before=True, clip_sampler_after=False),
        "cube-double": dict(alpha=3.0, clip_sampler_before=True, clip_sampler_after=False),
        "cube-triple": dict(alpha=0.3, clip_sampler_before=True, clip_sampler_after=False),
        "cube-quadruple": dict(alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
        "scene": dict(alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
        "puzzle-3x3": dict(alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
        "puzzle-4x4": dict(alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
    },}

SUITE_METHODS = tuple(METHOD_ENV)


def suite_family(task: str) -> str | None:
    """The suite environment whose values a task takes (None outside the suite)."""
    fam = presets.env_family(task)
    fam = FAMILY_ALIAS.get(fam, fam)
    return fam if fam in METHOD_ENV["fql"] else None


def common_preset(task: str) -> dict:
    """The settings every method of the suite shares on this task's environment."""
    fam = presets.env_family(task) or ""
    manipulation = fam.startswith(MANIPULATION)
    return dict(
        ensemble=10,
        rho=0.0 if fam.startswith("humanoidmaze") else 0.5,
        actor_hidden_dims=(512, 512, 512, 512),
        value_hidden_dims=(512, 512, 512, 512),
        layer_norm=True,
        batch_size=256,
        horizon=5 if manipulation else 1,
        discount=0.995 if ("giant" in fam or fam.startswith("humanoidmaze")) else 0.99,
        sparse=fam.startswith(("scene", "puzzle")),
    )


def env_preset(method: str) -> Callable[[str], dict]:
    """``task -> settings`` for ``method``: the common settings, then the method's own values."""
    table = METHOD_ENV[method]

    def preset(task: str) -> dict:
        values = common_preset(task) if presets.env_family(task) else {}
        values.update(table.get(suite_family(task) or "", {}))
        return values

    return preset
