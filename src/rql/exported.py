"""Exported policies: load and run one with JAX alone (no flax, no optax, no rql agents).

A file written by ``rql export`` (:mod:`rql.exporting`) is::

    b"RQLPOLX1"                 8 bytes, the format's magic
    header length               8 bytes, little-endian unsigned
    header                      UTF-8 JSON: shapes, chunk length, agent, checkpoint, versions, the
                                payload's length and SHA-256
    program                     a serialized ``jax.export.Exported``: the evaluation policy (the EMA
                                actor's sampler with its flow steps, clipping and chunk reshape) as a
                                function of the parameters it reads, the observations and a key, the
                                batch size left symbolic
    parameters                  those parameters' raw bytes, one array after another (shapes, dtypes
                                and offsets in the header): passed in as arguments rather than folded
                                into the program as constants, the program computes exactly what the
                                checkpoint's compiled policy computes

:func:`load_exported` checks the magic, the header and the payload's hash, and returns an
:class:`ExportedPolicy`: ``policy(obs (B, obs_dim), key) -> (B, horizon, action_dim)`` for any ``B``,
the same actions as the checkpoint's policy for the same observations and key.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import struct

from rql.errors import RQLError

def observation_batch(obs, flat_dim: int, dtype: str = "float32", image_shape=None):
    """A batch of observations as a policy reads it, ``(B, flat_dim)``, or one clear error. A policy on images
    (``dtype`` uint8; the encoder makes floats of them) takes uint8 only, flat or as ``(B, *image_shape)``
    (stacked frames along the channels, oldest first); a policy on states takes anything numeric as float32."""
    import numpy as np

    obs = np.asarray(obs)
    if image_shape is not None and obs.ndim == 1 + len(image_shape) and obs.shape[1:] == tuple(image_shape):
        obs = obs.reshape(len(obs), -1)
    if dtype == "uint8":
        if obs.dtype != np.uint8:
            h, w, c = image_shape
            raise RQLError(f"this policy reads uint8 images ({h}x{w}x{c}: stacked frames along the channels, or "
                           f"flat {flat_dim}); got {obs.dtype} observations")
    else:
        obs = obs.astype(np.float32)
    if obs.ndim != 2 or obs.shape[1] != flat_dim:
        extra = "" if image_shape is None else f" or (batch, {', '.join(map(str, image_shape))})"
        raise RQLError(f"observations of shape {obs.shape}; this policy takes (batch, {flat_dim}){extra}")
    if obs.shape[0] == 0:
        raise RQLError("an empty batch of observations")
    return obs


MAGIC = b"RQLPOLX1"
FORMAT = "rql-exported-policy"
FORMAT_VERSION = 1


def pack(header: dict, program: bytes, params: list) -> bytes:
    """The bytes of an exported-policy file: ``header`` gets the lengths and hashes of the program and
    of the parameters (numpy arrays), and where each array lies."""
    import numpy as np

    blobs, table, offset = [], [], 0
    for a in params:
        a = np.asarray(a)  # (not ascontiguousarray: it makes a 0-d array 1-d)
        blobs.append(a.tobytes(order="C"))
        table.append({"shape": list(a.shape), "dtype": str(a.dtype), "offset": offset, "nbytes": a.nbytes})
        offset += a.nbytes
    weights = b"".join(blobs)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **header, "params": table,
              "program_bytes": len(program), "program_sha256": hashlib.sha256(program).hexdigest(),
              "params_bytes": len(weights), "params_sha256": hashlib.sha256(weights).hexdigest()}
    text = json.dumps(header, indent=1, sort_keys=True).encode()
    return MAGIC + struct.pack("<Q", len(text)) + text + program + weights


def read_file(path: str | pathlib.Path) -> tuple[dict, bytes, list]:
    """``(header, program, parameters)`` of an exported-policy file, checked; one line for a foreign or
    damaged file."""
    import numpy as np

    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RQLError(f"{path}: no such file") from None
    except OSError as e:
        raise RQLError(f"{path}: cannot read it ({e.strerror})") from None
    if not data.startswith(MAGIC):
        raise RQLError(f"{path}: not a policy exported by 'rql export' (it does not start with {MAGIC.decode()})")
    try:
        (n,) = struct.unpack("<Q", data[8:16])
        header = json.loads(data[16 : 16 + n].decode())
        assert isinstance(header, dict) and header.get("format") == FORMAT
        program = data[16 + n : 16 + n + int(header["program_bytes"])]
        weights = data[16 + n + int(header["program_bytes"]) :]
    except Exception:
        raise RQLError(f"{path}: damaged exported policy (unreadable header); export it again with "
                       "'rql export RUN_DIR --out FILE'") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise RQLError(f"{path}: exported policy format {header.get('format_version')}; this rql reads format "
                       f"{FORMAT_VERSION}")
    for what, blob in (("program", program), ("params", weights)):
        if len(blob) != header.get(f"{what}_bytes") or hashlib.sha256(blob).hexdigest() != header.get(f"{what}_sha256"):
            raise RQLError(f"{path}: damaged exported policy (its {what} is {len(blob)} bytes and does not match its "
                           "recorded length and SHA-256); export it again with 'rql export RUN_DIR --out FILE'")
    try:
        params = [np.frombuffer(weights, np.dtype(t["dtype"]), int(np.prod(t["shape"], dtype=np.int64)),
                                int(t["offset"])).reshape(t["shape"]) for t in header["params"]]
    except Exception:
        raise RQLError(f"{path}: damaged exported policy (its parameter table does not fit its parameters)") from None
    return header, program, params


class ExportedPolicy:
    """A policy loaded from an exported file: ``policy(obs, key)`` for a batch of observations
    (``(B, obs_dim)``, float32; a policy on images: uint8 ``(B, H, W, K * C)`` or flat) and a raw PRNG key (``jax.random.PRNGKey(seed)``, uint32 ``(2,)``)
    returns the action chunks ``(B, horizon, action_dim)`` inside [-1, 1]; ``policy.act(obs, key)``
    does one observation (``(obs_dim,)`` -> ``(horizon, action_dim)``)."""

    def __init__(self, header: dict, exported, params: list):
        self.header = header
        self.exported, self.params = exported, params
        self.observation_shape = tuple(header["observation_shape"])
        self.observation_dtype = header.get("observation_dtype", "float32")
        self.image_shape = tuple(header["image_shape"]) if header.get("image_shape") else None
        """Images: (H, W, K * C) of the stacked frames the policy reads (``header["frame_stack"]`` frames)."""
        self.horizon = int(header["horizon"])
        self.action_dim = int(header["action_dim"])
        self.agent = header.get("agent")
        self.checkpoint = header.get("checkpoint")

    def _key(self, key):
        import jax
        import numpy as np

        if key is None:
            raise RQLError("the exported policy needs a key: policy(obs, jax.random.PRNGKey(seed))")
        if isinstance(key, int):
            key = jax.random.PRNGKey(key)
        if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        key = np.asarray(key)
        if key.shape != tuple(self.header["key_shape"]) or key.dtype != np.uint32:
            raise RQLError(f"the exported policy's key is a uint32 array of shape {tuple(self.header['key_shape'])} "
                           f"(jax.random.PRNGKey(seed)); got {key.dtype} {key.shape}")
        return key

    def __call__(self, obs, key):
        obs = observation_batch(obs, self.observation_shape[0], self.observation_dtype, self.image_shape)
        return self.exported.call(self.params, obs, self._key(key))

    def act(self, obs, key):
        import numpy as np

        return self(np.asarray(obs)[None], key)[0]

    def __repr__(self) -> str:
        return (f"ExportedPolicy(agent={self.agent!r}, checkpoint={self.checkpoint}, observation_shape="
                f"{self.observation_shape}, horizon={self.horizon}, action_dim={self.action_dim})")


def load_exported(path: str | pathlib.Path) -> ExportedPolicy:
    """The policy of a file written by ``rql export`` (needs JAX only)."""
    header, program, params = read_file(path)
    import jax.numpy as jnp
    from jax import export

    try:
        exported = export.deserialize(bytearray(program))
    except Exception as e:
        raise RQLError(f"{path}: damaged exported policy (JAX cannot read its program: {type(e).__name__})") from None
    return ExportedPolicy(header, exported, [jnp.asarray(p) for p in params])
