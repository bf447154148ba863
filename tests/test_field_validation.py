"""Agent-field ranges (``rql.agents.fields``): declared beside each field, checked by ``build_config``, by
``rql train`` before any data is read or anything is written, and by ``rql sweep`` when it plans.

The table tests are driven by the declarations themselves: every registered agent, every field that
declares a range, values just outside it. A coverage test makes sure every numeric field of every
registered agent (a plugin's too) declares one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import typing

import pytest

from rql.agents import REGISTRY, build_config, presets
from rql.agents.fields import Range, check_config, declared, in_range, positive_int, show
from rql.cli import main
from rql.errors import RQLError

TASK = "cube-single-play-singletask-task2-v0"
# Values that must be refused wherever an agent has the field, whatever it declares (a removed or
# widened declaration fails the table below). The rest of the table comes from the declarations.
REQUIRED = {
    "horizon": [0], "batch_size": [0], "discount": [0.0, 1.5], "lr": [0.0, -1e-3], "tau": [-1.0, 1.5],
    "ensemble": [0], "flow_steps": [0], "rho": [-0.5], "expectile": [0.0, 1.0, 1.5], "kappa": [0.0, 1.0],
    "alpha": [-1.0], "alpha_actor": [-1.0], "alpha_critic": [-1.0], "fql_alpha": [-1.0], "guidance_coef": [-1.0],
    "noisy_coef": [-1.0], "best_of_n": [0], "num_samples": [0], "actor_freq": [0], "actor_hidden_dims": [(0,)],
    "value_hidden_dims": [(256, 0)], "actor_noise": [-0.1], "actor_noise_clip": [-0.1], "noise_scale": [-0.1],
    "edit_scale": [-0.1], "ema": [-0.1, 1.5], "inv_temp": [-1.0], "time_dim": [0], "clip_grad_norm": [0.0],
    "max_weight": [0.0], "actor_out_init_scale": [-1.0], "actor_fc_scale": [-1.0],
}
CASES = [(agent, f.name) for agent in sorted(REGISTRY) for f in dataclasses.fields(REGISTRY[agent].config_cls)
         if f.name in declared(REGISTRY[agent].config_cls) or f.name in REQUIRED]


def _num(spec: Range, x):
    return int(x) if spec.integer else float(x)


def bad_numbers(spec: Range) -> list:
    """Single numbers outside ``spec`` (its bounds, and what its kind refuses)."""
    out = []
    if spec.lo is not None:
        out.append(_num(spec, spec.lo) if spec.lo_open else _num(spec, spec.lo - 1))
    if spec.hi is not None:
        out.append(_num(spec, spec.hi) if spec.hi_open else _num(spec, spec.hi + 1))
    if spec.integer:
        out.append((spec.lo if spec.lo is not None else 1) + 0.5)  # not an integer
    else:
        out.append(float("nan"))
        if spec.finite:
            out.append(float("inf"))
    return out


def bad_values(spec: Range) -> list:
    if spec.each:
        good = _num(spec, spec.lo if spec.lo is not None else 1)
        out = [(good, b) for b in bad_numbers(spec)] + [good]  # an entry out of range; not a tuple
        if spec.min_len:
            out.append(())
    else:
        out = bad_numbers(spec)
    if not spec.optional:
        out.append(None)
    return out


def boundary_values(spec: Range) -> list:
    """Allowed values at the closed bounds."""
    out = [v for v, is_open in ((spec.lo, spec.lo_open), (spec.hi, spec.hi_open)) if v is not None and not is_open]
    out = [_num(spec, v) for v in out]
    if spec.each:
        out = [(v,) * max(1, spec.min_len) for v in out]
    return out + ([None] if spec.optional else [])


@pytest.mark.parametrize("agent,name", CASES, ids=[f"{a}.{n}" for a, n in CASES])
def test_every_validated_field_refuses_values_outside_its_range(agent, name):
    ranges = declared(REGISTRY[agent].config_cls)
    spec = ranges.get(name)
    for bad in REQUIRED.get(name, []) + (bad_values(spec) if spec else []):
        try:
            build_config(agent, None, None, {name: bad})
        except RQLError as e:
            msg = str(e)
        else:
            pytest.fail(f"{agent}: {name} = {bad!r} was accepted")
        assert "\n" not in msg and msg.startswith("agent field '"), msg
        assert f"'{name}'" in msg and f"= {show(bad)} " in msg, (bad, msg)
        # The line names the field it checked: this one, or the one it is an alias of (IFQL's expectile).
        checked = next((n for n, s in ranges.items() if name in s.alias), name)
        assert msg.startswith(f"agent field '{checked}'") and msg.endswith("it must be " + ranges[checked].describe())
    for ok in boundary_values(spec) if spec else []:
        build_config(agent, None, None, {name: ok})


def _numeric(t) -> bool:
    """Whether a field's type holds numbers (int, float, tuples of them; Optional too), not a bool."""
    if t is bool:
        return False
    if t in (int, float):
        return True
    return any(_numeric(a) for a in typing.get_args(t) if a is not type(None) and a is not Ellipsis)


@pytest.mark.parametrize("agent", sorted(REGISTRY))
def test_every_numeric_field_declares_a_range(agent):
    """A new field (or a plugin agent's) must say what it allows: ``any_number()`` when nothing is excluded."""
    cls = REGISTRY[agent].config_cls
    hints = typing.get_type_hints(cls)
    numeric = {f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])}
    assert numeric - set(declared(cls)) == set(), f"{agent}: numeric fields without a declared range"
    ranges = declared(cls)
    # The ranges every agent shares (a redeclared field must redeclare the same range).
    expected = {
        "horizon": Range(lo=1, integer=True), "batch_size": Range(lo=1, integer=True),
        "discount": Range(0, 1, lo_open=True), "lr": Range(lo=0, lo_open=True), "tau": Range(0, 1),
        "ensemble": Range(lo=1, integer=True), "rho": Range(lo=0), "best_of_n": Range(lo=1, integer=True),
        "num_samples": Range(lo=1, integer=True), "actor_freq": Range(lo=1, integer=True),
        "value_hidden_dims": Range(lo=1, integer=True, each=True), "ema": Range(0, 1),
    }
    for name, spec in expected.items():
        if name in ranges:
            assert ranges[name] == spec, (agent, name, ranges[name])
    assert ranges["flow_steps" if "flow_steps" in ranges else "horizon"].lo >= 1
    if "expectile" in ranges:
        assert (ranges["expectile"].lo, ranges["expectile"].hi, ranges["expectile"].lo_open,
                ranges["expectile"].hi_open) == (0, 1, True, True)


def test_defaults_and_every_preset_are_in_range():
    tasks = [None] + [f"{fam}-singletask-task1-v0" for fam in presets._FAMILIES]
    for agent, spec in REGISTRY.items():
        check_config(spec.config_cls())
        for settings in spec.settings_names:
            for task in tasks:
                for preset in (None, *spec.network_presets):
                    build_config(agent, task, preset, settings=settings)


def test_the_line_and_aliases():
    with pytest.raises(RQLError) as e:
        build_config("rql", TASK, "small", {"horizon": 0})
    assert str(e.value) == "agent field 'horizon' = 0 is out of range: it must be an integer >= 1"
    with pytest.raises(RQLError) as e:
        build_config("rql", None, None, {"discount": 1.5})
    assert str(e.value) == "agent field 'discount' = 1.5 is out of range: it must be in (0, 1]"
    with pytest.raises(RQLError) as e:  # IFQL's expectile is an alias of kappa, set when the config is made
        build_config("ifql", None, None, {"expectile": 1.5})
    assert str(e.value) == "agent field 'kappa' (or its alias 'expectile') = 1.5 is out of range: it must be in (0, 1)"
    with pytest.raises(RQLError, match=r"'actor_hidden_dims' = \(256, 0\) is out of range: it must be a tuple"):
        build_config("fql", None, None, {"actor_hidden_dims": (256, 0)})
    with pytest.raises(RQLError, match=r"'horizon' = 'abc' is invalid: it must be an integer >= 1"):
        build_config("rql", None, None, {"horizon": "abc"})
    # What may legitimately be 0 or None is allowed.
    cfg = build_config("fedit", None, None, {"edit_scale": 0.0, "edit_target_entropy": None, "rho": 0.0, "tau": 0})
    assert cfg.edit_scale == 0.0 and cfg.edit_target_entropy is None
    build_config("dsrl", None, None, {"target_entropy": -3.5, "target_entropy_multiplier": -0.1})


def test_a_plugin_config_is_checked_too():
    @dataclasses.dataclass
    class PluginConfig:
        steps: int = dataclasses.field(default=2, metadata=positive_int())
        """Steps."""
        weight: float = dataclasses.field(default=0.5, metadata=in_range(0, 1, hi_open=True))
        """A weight."""
        note: str = "free"
        """Not checked."""

    check_config(PluginConfig())
    with pytest.raises(RQLError, match=r"^agent field 'weight' = 1.0 is out of range: it must be in \[0, 1\)$"):
        check_config(PluginConfig(weight=1.0))
    with pytest.raises(RQLError, match="'steps' = 0"):
        check_config(PluginConfig(steps=0))


def test_help_keeps_docstrings_and_defaults(capsys, monkeypatch):
    """Fields written as ``dataclasses.field(default=..., metadata=...)`` keep their --help text and default."""
    monkeypatch.setenv("COLUMNS", "1000")
    own = {
        "fql": ["Number of critics (the suite's num_qs). (default: 10)", "--agent.best-of-n INT",
                "One-step samples per state for the target's next action and for acting"],
        "rql": ["Number of value networks E. (default: 10)", "Action chunk length h (reference default 3",
                "Expectile kappa of the value loss (0.5 is plain squared error). (default: 0.5)"],
        "qsm": ["Size of the learnable Fourier embedding of the denoising step. (default: 64)",
                "Denoising steps T of the DDPM policy (the suite's diffusion_steps). (default: 10)"],
    }
    for agent, needles in own.items():
        with pytest.raises(SystemExit) as e:
            main(["train", "--agent", agent, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for needle in needles + ["Discount gamma per environment step. (default: 0.99)",
                                 "Polyak rate of the target value/critic networks. (default: 0.005)",
                                 "Hidden layer sizes of each value/critic network. (default: 512 512 512 512)"]:
            assert needle in text, (agent, needle)


def test_print_config_fails_with_the_line(capsys):
    assert main(["train", "--agent", "rql", "--agent.horizon", "0", "--print-config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "error: agent field 'horizon' = 0 is out of range: it must be an integer >= 1"
    assert main(["train", "--agent", "rql", "--task", TASK, "--preset", "small", "--print-config"]) == 0
    assert '"horizon": 5' in capsys.readouterr().out


CLI_CASES = [
    ("rql", ["--agent.horizon", "0"], "horizon"),
    ("rql", ["--agent.flow-steps", "0"], "flow_steps"),
    ("fql", ["--agent.ensemble", "0"], "ensemble"),
    ("rql", ["--agent.batch-size", "0"], "batch_size"),
    ("rql", ["--agent.discount", "1.5"], "discount"),
    ("rql", ["--agent.expectile", "1.5"], "expectile"),
    ("rql", ["--agent.tau", "-1"], "tau"),
]


def test_rql_train_refuses_out_of_range_fields_before_anything(tmp_path):
    """The real command, each case its own process (all started at once): one line, exit 2, nothing written."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = []
    for i, (agent, flags, field) in enumerate(CLI_CASES):
        base = tmp_path / str(i)
        base.mkdir()
        argv = [sys.executable, "-m", "rql.cli", "train", "--agent", agent, *flags, "--task", TASK, "--preset", "small",
                "--run-dir", str(base / "r"), "--dataset-dir", str(base / "nodata")]
        procs.append((base, field, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                    env=env, cwd=tmp_path)))
    for base, field, p in procs:
        out, _ = p.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.strip()]
        assert p.returncode == 2, out
        assert len(lines) == 1 and lines[0].startswith("error: agent field ") and f"'{field}'" in lines[0], out
        assert "Traceback" not in out and "out of range: it must be" in lines[0]
        assert not (base / "r").exists() and not (base / "nodata").exists()
        assert [p.name for p in base.iterdir()] == []


def test_a_sweep_file_with_a_bad_value_fails_at_planning(tmp_path, capsys, monkeypatch):
    import rql.sweep as sweep

    out = tmp_path / "o"
    f = tmp_path / "s.toml"
    f.write_text(f'tasks = ["{TASK}"]\nagents = ["rql", "flow-bc"]\nout = "{out}"\n'
                 '[grid]\nrql.discount = [0.99, 1.5]\n[set]\n"agent.batch_size" = 8\n')
    with pytest.raises(RQLError, match=r"rql-discount=1.5: agent field 'discount' = 1.5 is out of range"):
        sweep.make_plan(sweep.SweepArgs(config=str(f)))
    monkeypatch.setattr(sweep.execution, "_start_ray", lambda *a: pytest.fail("a trial was started"))
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", "--config", str(f), *extra]) == 2
        cap = capsys.readouterr()
        lines = [line for line in (cap.out + cap.err).splitlines() if line.strip()]
        assert lines == ["error: rql-discount=1.5: agent field 'discount' = 1.5 is out of range: it must be in (0, 1]"]
        assert not out.exists()
    f.write_text(f.read_text().replace("1.5", "0.9"))
    assert len(sweep.make_cells(sweep.make_plan(sweep.SweepArgs(config=str(f))))) == 3


def test_bad_value_kinds_are_described():
    spec = Range(0, 1, lo_open=True, optional=True)
    assert spec.describe() == "None or a number in (0, 1]"
    assert spec.problem(None) is None and spec.problem(0.0) == "is out of range" and spec.problem("x") == "is invalid"
    assert Range(lo=1, integer=True).problem(True) == "is invalid"  # a bool is no integer
    assert Range(lo=0, lo_open=True, finite=False).problem(math.inf) is None
    assert Range(lo=1, integer=True, each=True, min_len=1).describe() == (
        "a non-empty tuple whose entries are each an integer >= 1")
