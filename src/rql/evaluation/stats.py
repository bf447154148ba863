"""What an evaluation reports: a success rate with its 95% Wilson interval, the mean return and
length, from the episodes of one evaluation (:func:`summarise`) or of several evaluations of
disjoint episodes pooled into one (:func:`pool_results`)."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(results: list[tuple[float, float, int]]) -> dict:
    """The result of one evaluation from its episodes' ``(success, return, length)``."""
    succ = np.array([r[0] for r in results])
    k = int(np.sum(succ > 0.5))
    lo, hi = wilson_interval(k, len(results))
    return {
        "success": float(k / max(len(results), 1)),
        "success_ci_low": lo,
        "success_ci_high": hi,
        "return": float(np.mean([r[1] for r in results])) if results else 0.0,
        "length": float(np.mean([r[2] for r in results])) if results else 0.0,
        "episodes": len(results),
    }


def pool_results(parts: list[dict]) -> dict:
    """One result from evaluations of disjoint episodes (e.g. ``rql eval --first-episode`` ranges)."""
    n = sum(p["episodes"] for p in parts)
    k = sum(round(p["success"] * p["episodes"]) for p in parts)
    lo, hi = wilson_interval(k, n)

    def mean(key):
        return float(sum(p[key] * p["episodes"] for p in parts) / max(n, 1))

    return {**parts[0], "success": k / max(n, 1), "success_ci_low": lo, "success_ci_high": hi,
            "return": mean("return"), "length": mean("length"), "episodes": n}
