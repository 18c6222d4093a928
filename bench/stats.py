"""Pure helpers: a figure of several runs (median, min, max) and the ratios between figures."""
from __future__ import annotations

import statistics
from typing import Iterable


def figure(values: Iterable[float], digits: int = 3) -> dict:
    """{"median", "min", "max", "runs": [...]} of the measured values, rounded for the record."""
    runs = [round(float(v), digits) for v in values]
    if not runs:
        raise ValueError("a figure needs at least one run")
    return {"median": round(statistics.median(runs), digits), "min": min(runs), "max": max(runs), "runs": runs}


def ratio(numerator: dict, denominator: dict, digits: int = 3) -> float | None:
    """Ratio of two figures' medians (None when the denominator is zero)."""
    if not denominator["median"]:
        return None
    return round(numerator["median"] / denominator["median"], digits)


def goal(value: float | None, op: str, target: float) -> dict:
    """A goal as recorded beside its figure: {"goal": ">= 10", "met": true}."""
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"goal": f"{op} {target:g}", "met": met}


def median_of_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per phase, the median duration over the runs that reached it."""
    names = [name for run in runs for name in run]
    ordered = list(dict.fromkeys(names))
    return {name: round(statistics.median([run[name] for run in runs if name in run]), 3) for name in ordered}
