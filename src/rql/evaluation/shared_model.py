"""OGBench manipulation environments that share one compiled MuJoCo model.

Compiling a manipulation environment's model takes about a second and 100 MB; an evaluation pool
holds several environments of one task, so all but the first reuse its model (and its stateless
inverse-kinematics controller), each with its own ``MjData`` and its own values of the few model
fields OGBench writes while it runs: every environment sees exactly the model a separately built
one would, and plays the same episodes.
"""

from __future__ import annotations

import numpy as np

MODEL_FIELDS_CHANGED_BY_OGBENCH = ("geom_rgba", "mat_rgba", "site_pos", "dof_damping")
"""``MjModel`` fields that OGBench's manipulation environments write while they run (button and
cube colours, target sites, the damping that locks the drawer and window in ``scene``). Each
environment sharing a model keeps its own values of them (a test checks that no other field changes)."""


class SharedModelEnv:
    """An OGBench manipulation environment that shares the compiled ``MjModel`` (and the stateless
    inverse-kinematics controller) of ``template``, with its own ``MjData``; ``template=None``
    makes the environment that others share.

    OGBench writes a few model fields during episodes (:data:`MODEL_FIELDS_CHANGED_BY_OGBENCH`).
    Each environment keeps its own values of them, loaded into the shared model before each of its
    resets and steps and saved after, starting from the values of a freshly compiled model: it sees
    exactly the model a separately built environment would.
    """

    def __init__(self, env, template: "SharedModelEnv | None" = None):
        import mujoco

        self.env, self.template = env, template
        self._own: list[np.ndarray] | None = None  # this environment's values, once it has a model
        self._views: list[np.ndarray] = []
        u = env.unwrapped
        if template is None:
            compile_own = u.compile_model_and_data
            if u._model is not None:  # compiled when made (gymnasium's environment checker resets it)
                self.fresh = [getattr(u._model, f).copy() for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]

            def compile_model_and_data():
                compile_own()
                self.fresh = [getattr(u._model, f).copy() for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]

        else:
            u._ik = template.env.unwrapped._ik  # solve() first sets its data's whole qpos: no state between calls

            def compile_model_and_data():  # OGBench's, minus the compilation
                u._model = template.model()
                u._data = mujoco.MjData(u._model)
                u._model.opt.timestep = u._physics_timestep
                mujoco.mj_resetData(u._model, u._data)
                mujoco.mj_forward(u._model, u._data)
                u.post_compilation()
                u._dirty = False

        u.compile_model_and_data = compile_model_and_data

    @staticmethod
    def supports(env) -> bool:
        from ogbench.manipspace.envs.env import CustomMuJoCoEnv

        return isinstance(env.unwrapped, CustomMuJoCoEnv)

    def model(self):
        """The shared model, compiled now if it is not yet, as OGBench's first reset compiles it
        but without starting an episode (whose random draws would change the model's fields)."""
        u = self.env.unwrapped
        if u._model is None:
            if u._mjcf_model is None:
                u._mjcf_model = u.build_mjcf_model()
            u._mjcf_model = u.modify_mjcf_model(u._mjcf_model)
            u.compile_model_and_data()
            u._never_compiled = False
        return u._model

    def _take_values(self) -> None:
        """Start this environment's own values: those of the freshly compiled model (whatever was
        done to the model outside :meth:`reset` and :meth:`step`, e.g. relabelling data with it)."""
        if self._own is None:
            model = self.env.unwrapped._model if self.template is None else self.template.model()
            self._views = [getattr(model, f) for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]
            self._own = [v.copy() for v in (self.template or self).fresh]

    def _load(self) -> None:
        if self._own is None and self.template is None and self.env.unwrapped._model is None:
            return  # the template's first reset compiles the model; _save takes its values after
        self._take_values()
        for v, own in zip(self._views, self._own):
            v[...] = own

    def _save(self) -> None:
        self._take_values()
        for v, own in zip(self._views, self._own):
            own[...] = v

    def __getattr__(self, name):  # observation_space, action_space, spec, unwrapped, ...
        if "env" not in self.__dict__:  # being copied
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, **kwargs):
        self._load()
        out = self.env.reset(**kwargs)
        self._save()
        return out

    def step(self, action):
        self._load()
        out = self.env.step(action)
        self._save()
        return out

    def twin(self) -> "SharedModelEnv":
        """A new environment sharing this one's model: a copy of this one (its wrappers and Python
        state, which every reset re-initialises) with a new ``MjData``, sharing the model, the
        inverse-kinematics controller and the MJCF description, which OGBench only reads once
        compiled. Much cheaper than making one: no model is compiled, no MJCF tree built."""
        import copy

        import mujoco

        root = self.template or self
        u = self.env.unwrapped
        model = root.model()
        memo: dict = {}
        _keep_shared(u.__dict__, memo)
        memo[id(u._data)] = mujoco.MjData(model)  # the twin's own
        env = copy.deepcopy(self.env, memo)
        del env.unwrapped.compile_model_and_data  # this one's; the twin gets its own
        return SharedModelEnv(env, root)

    def close(self) -> None:
        self.env.close()


def _keep_shared(obj, memo: dict, depth: int = 0) -> None:
    """Put the MJCF elements (and their trees) and MuJoCo objects that ``obj`` holds, directly or
    in lists, tuples and dicts, into a ``deepcopy`` memo so that a copy refers to the same ones."""
    from dm_control.mjcf import element

    if depth > 4:
        return
    if isinstance(obj, dict):
        for v in obj.values():
            _keep_shared(v, memo, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _keep_shared(v, memo, depth + 1)
    elif isinstance(obj, element._ElementImpl) or type(obj).__module__.startswith("mujoco"):
        memo[id(obj)] = obj
