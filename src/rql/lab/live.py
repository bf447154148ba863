"""The trained networks as page data: every MLP of an agent packed as float32 weights in one base64
string, with a layout the page's JavaScript (:mod:`rql.lab.livejs`) evaluates.

A network is a list of dense layers (kernel ``(in, out)``, bias ``(out,)``), each hidden one followed
by GELU (tanh form, as :func:`flax.linen.gelu`) and, when the module has it, LayerNorm (epsilon 1e-6,
the fast variance ``E[x^2] - E[x]^2``, as :class:`flax.linen.LayerNorm`). An ensemble
(:class:`rql.nets.Ensemble`) is ``E`` such networks; the page averages their outputs, as the figures'
:func:`rql.lab.measure.fields` do.
"""

from __future__ import annotations

import base64
import re

import numpy as np


class Packer:
    """Collects networks and arrays into one float32 buffer; :meth:`spec` is the page's JSON."""

    def __init__(self):
        self._chunks: list[np.ndarray] = []
        self._size = 0
        self.nets: dict[str, dict] = {}
        self.arrays: dict[str, dict] = {}

    def _put(self, a) -> int:
        a = np.ascontiguousarray(np.asarray(a, np.float32).ravel())
        off = self._size
        self._chunks.append(a)
        self._size += a.size
        return off

    def array(self, name: str, a) -> None:
        """A float32 array the page reads as ``lab.arrays[name]`` (shape kept)."""
        a = np.asarray(a, np.float32)
        self.arrays[name] = {"offset": self._put(a), "shape": list(a.shape)}

    def net(self, name: str, params, inputs: list[str], note: str = "", clip: bool = False) -> dict:
        """Pack the MLP (or ensemble of MLPs) found in a Flax parameter tree; ``inputs`` name the
        concatenated input blocks in order (e.g. ``["obs", "x", "t"]``)."""
        members, has_ln = _mlp_layers(params)
        spec_members = []
        for layers in members:
            out = []
            for i, (k, b, ln) in enumerate(layers):
                entry = {"in": int(k.shape[0]), "out": int(k.shape[1]), "W": self._put(k), "b": self._put(b)}
                if ln is not None:
                    entry["ln"] = [self._put(ln[0]), self._put(ln[1])]
                out.append(entry)
            spec_members.append(out)
        n_params = sum(k.size + b.size + (0 if ln is None else ln[0].size * 2)
                       for layers in members for k, b, ln in layers)
        self.nets[name] = {"members": spec_members, "inputs": inputs, "note": note, "clip": clip,
                           "params": int(n_params), "layer_norm": has_ln,
                           "hidden": [e["out"] for e in spec_members[0][:-1]]}
        return self.nets[name]

    def spec(self) -> dict:
        buf = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return {"weights": base64.b64encode(buf.astype("<f4").tobytes()).decode("ascii"),
                "floats": int(buf.size), "nets": self.nets, "arrays": self.arrays}


def _find_mlp(tree) -> dict:
    """The innermost dict holding ``Dense_0`` (an MLP's own parameters)."""
    if isinstance(tree, dict):
        if "Dense_0" in tree:
            return tree
        for v in tree.values():
            try:
                return _find_mlp(v)
            except KeyError:
                pass
    raise KeyError("no Dense_0 in the parameter tree")


def _mlp_layers(params) -> tuple[list, bool]:
    """Per member: ``[(kernel, bias, (ln_scale, ln_bias) or None), ...]``; whether LayerNorm is used."""
    mlp = {k: np.asarray(v) if not isinstance(v, dict) else {kk: np.asarray(vv) for kk, vv in v.items()}
           for k, v in _find_mlp(dict(params)).items()}
    n = max(int(m.group(1)) for k in mlp if (m := re.fullmatch(r"Dense_(\d+)", k))) + 1
    has_ln = "LayerNorm_0" in mlp
    k0 = mlp["Dense_0"]["kernel"]
    ensemble = k0.ndim == 3
    E = k0.shape[0] if ensemble else 1
    members = []
    for e in range(E):
        layers = []
        for i in range(n):
            d = mlp[f"Dense_{i}"]
            k, b = (d["kernel"][e], d["bias"][e]) if ensemble else (d["kernel"], d["bias"])
            ln = None
            if i < n - 1 and has_ln:
                L = mlp[f"LayerNorm_{i}"]
                ln = (L["scale"][e], L["bias"][e]) if ensemble else (L["scale"], L["bias"])
            layers.append((k, b, ln))
        members.append(layers)
    return members, has_ln


def payload_bytes(spec: dict) -> int:
    """Bytes of the base64 weights in the page."""
    return len(spec["weights"])
