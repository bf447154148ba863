"""Pixels: what rendering costs per environment step of a visual task, with and without the video's camera.

A visual task's environment renders its 64x64 observation (``front_pixels``) at every step. A video
(``--video-episodes``, ``rql eval --video``) also renders OGBench's usual ``front`` camera at the video's size
with a renderer of its own (:class:`rql.video.CameraRenderer`: no shadows, no multisampling) and puts the
policy's newest 64x64 frame, upscaled, beside it. Measured here, per step, after a warm-up, with random
actions (the same ones in every setting), episodes reset every ``--episode-steps``:

- ``obs_only``: ``env.step`` of the stacked visual environment (``make_env(task, frame_stack=3)``), the
  observation render included (what training, evaluation and online fine-tuning pay);
- ``obs_plus_video_camera``: the same plus what a video records per step (:class:`rql.video._Recorder`:
  the camera frame at ``--size``, the upscaled 64x64 view, the two side by side);
- ``video_camera_only``: the camera frame alone (``CameraRenderer.render``);
- ``state_task_video``: for reference, a state task's video step (``cube-single``, ``env.step`` + its own
  renderer at ``--size``, shadows off, as :func:`rql.video.render_episodes` does there).

    MUJOCO_GL=egl python benchmarks/pixels_render.py --steps 40 --save

Prints one JSON object (and writes benchmarks/results/pixels_render.json with --save). Software GL shares the
CPU with everything else: the JSON records the 1-minute load average at the start and the end."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def per_step(env, step_fn, actions, episode_steps: int, seed: int = 0) -> tuple[float, list[float]]:
    """Mean seconds per step of ``step_fn(action)`` over ``actions`` (resets between episodes not timed)."""
    times = []
    env.reset(seed=seed)
    for i, a in enumerate(actions):
        if i and i % episode_steps == 0:
            env.reset(seed=seed + i)
        t0 = time.perf_counter()
        step_fn(a)
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="visual-cube-single-play-singletask-task1-v0")
    p.add_argument("--state-task", default="cube-single-play-singletask-task1-v0")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--episode-steps", type=int, default=20)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--frame-stack", type=int, default=3)
    p.add_argument("--save", action="store_true")
    args = p.parse_args()

    import mujoco
    import numpy as np

    from rql.data.loading import make_env
    from rql.video import CameraRenderer, _Recorder, select_gl_backend

    backend = select_gl_backend()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (args.warmup + args.steps, 5)).astype(np.float32)
    out = {"task": args.task, "steps": args.steps, "size": args.size, "frame_stack": args.frame_stack,
           "mujoco_gl": backend, "mujoco": mujoco.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
           "processor": platform.processor() or platform.node(),
           "load_average_1m_at_start": round(os.getloadavg()[0], 2)}

    def measure(name, env, step_fn):
        per_step(env, step_fn, actions[: args.warmup], args.episode_steps, seed=1)  # renderers made, caches warm
        mean, times = per_step(env, step_fn, actions[args.warmup:], args.episode_steps)
        out[name] = {"ms_per_step": round(1e3 * mean, 2), "ms_median": round(1e3 * float(np.median(times)), 2)}
        print(name, out[name], flush=True)

    env = make_env(args.task, frame_stack=args.frame_stack)
    measure("obs_only", env, env.step)
    env.close()

    rec = _Recorder(make_env(args.task, frame_stack=args.frame_stack), False, CameraRenderer(args.size))
    measure("obs_plus_video_camera", rec, rec.step)
    cam = rec.camera
    measure("video_camera_only", rec, lambda a: cam.render(rec.env))
    rec.close()

    state = _Recorder(make_env(args.state_task, width=args.size, height=args.size), False)
    measure("state_task_video", state, state.step)
    state.close()

    base, both = out["obs_only"]["ms_per_step"], out["obs_plus_video_camera"]["ms_per_step"]
    out["video_camera_extra_ms"] = round(both - base, 2)
    out["video_slowdown"] = round(both / base, 2)
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    if args.save:
        path = pathlib.Path(__file__).parent / "results" / "pixels_render.json"
        path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
