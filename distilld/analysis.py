"""The seed's analysis helpers (``distilled.analysis`` 0.1.0), kept for code written against them.

``ProportionCalculator`` summarises lists of :class:`DataPoint` into the seed's
proportion dicts, ``{feature: {"type": "categorical", "categories": {value: share},
"total_count": n}}`` or ``{"type": "numeric", "average": mean, "total_count": n}``;
``VectorAnalyzer`` is the seed's greedy selection over such dicts. They give the
seed's results, edge cases included. distilld's own engine does not use them: it
balances cells over sliding windows (selector.py), and ``get_current_stats()["drift"]``
gives its per-feature gaps.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilld.datapoint import DataPoint

__all__ = ["ProportionCalculator", "ProportionGap", "VectorAnalyzer"]

Proportions = dict[str, Any]
"""A feature name to its summary dict (and, after a simulated update, ``"_total_count"`` to an int)."""

_AVERAGE = "average"
_EPSILON = 0.001  # keeps a gap's weight finite where its priority is 0; the seed's constant


@dataclass
class ProportionGap:
    """How far the sent data is from all data for one category, or for a numeric's average.

    ``category_or_value`` is the category, or ``"average"``; for a numeric the two
    proportions are the averages themselves. ``gap`` is current minus sent (positive:
    under-represented); ``priority`` orders the gaps, smallest first.
    """

    variable_name: str
    category_or_value: str
    current_proportion: float
    sent_proportion: float
    gap: float
    priority: float


class VectorAnalyzer:
    """The seed's greedy selection: pick, one at a time, the point that closes the widest gaps."""

    def __init__(self) -> None:
        self.proportion_calculator = ProportionCalculator()

    def calculate_representation_gaps(
        self, current_proportions: Mapping[str, Any], sent_proportions: Mapping[str, Any]
    ) -> list[ProportionGap]:
        """The gap of every category and numeric average in ``current_proportions``, by (priority, -gap).

        A category's priority is ``±1 / its current share`` (positive when under-represented),
        so rare categories come first; a numeric's is the size of its gap (0.001 when none).
        """
        gaps: list[ProportionGap] = []
        for name, current in current_proportions.items():
            sent = sent_proportions.get(name, {})
            kind = current.get("type")
            if kind == "categorical":
                sent_shares = sent.get("categories", {})
                for category, share in current.get("categories", {}).items():
                    sent_share = sent_shares.get(category, 0.0)
                    gap = share - sent_share
                    priority = 1.0 / share if share > 0 else 1.0
                    gaps.append(
                        ProportionGap(name, category, share, sent_share, gap, priority if gap > 0 else -priority)
                    )
            elif kind == "numeric":
                average, sent_average = current.get(_AVERAGE, 0.0), sent.get(_AVERAGE, 0.0)
                gap = average - sent_average
                gaps.append(
                    ProportionGap(name, _AVERAGE, average, sent_average, gap, abs(gap) if gap != 0 else _EPSILON)
                )
        gaps.sort(key=lambda g: (g.priority, -g.gap))
        return gaps

    def score_candidate_point(self, point: DataPoint, gaps: Sequence[ProportionGap], current_sent_count: int) -> float:
        """How much sending ``point`` would close the gaps (0 when it closes none; higher is better).

        A string value scores its category's positive gap; any other value scores when it
        lies on the side of the sent average that the current average is, by the distance
        it could move it (at most the gap). Each term is divided by its gap's priority + 0.001.
        ``current_sent_count`` is accepted, as by the seed, and not used.
        """
        if not point.vector_values:
            return 0.0
        by_cell = {(g.variable_name, g.category_or_value): g for g in gaps}
        score = 0.0
        for name, value in point.vector_values.items():
            if isinstance(value, str):
                found = by_cell.get((name, value))
                if found is not None and found.gap > 0:
                    score += found.gap / (found.priority + _EPSILON)
                continue
            found = by_cell.get((name, _AVERAGE))
            if found is None or found.gap == 0:
                continue
            x, sent = float(value), found.sent_proportion
            if (found.gap > 0 and x > sent) or (found.gap < 0 and x < sent):
                score += min(abs(x - sent), abs(found.gap)) / (found.priority + _EPSILON)
        return score

    def select_optimal_points(
        self,
        candidate_points: Sequence[DataPoint],
        target_count: int,
        current_proportions: Mapping[str, Any],
        sent_proportions: Mapping[str, Any],
    ) -> list[DataPoint]:
        """Pick up to ``target_count`` of the candidates, each the best scorer given those picked before.

        After each pick the sent proportions are updated as if it had been sent. Points tied on a
        positive score are drawn with :func:`random.choice` (the module's shared generator, as in the
        seed: ``random.seed`` makes it repeatable); when none scores above 0 the first remaining one is taken.
        """
        if not candidate_points or target_count <= 0:
            return []
        remaining = list(candidate_points)
        sent: Proportions = copy.deepcopy(dict(sent_proportions or {}))
        sent_count = sent_proportions.get("_total_count", 0) if sent_proportions else 0
        picked: list[DataPoint] = []
        for _ in range(min(target_count, len(remaining))):
            gaps = self.calculate_representation_gaps(current_proportions, sent)
            best = self._best_candidates(remaining, gaps, sent_count)
            choice = self._break_ties(best) if best else remaining[0]
            picked.append(choice)
            remaining.remove(choice)
            sent = self.simulate_proportion_update(sent, choice, sent_count)
            sent_count += 1
        return picked

    def _best_candidates(
        self, candidates: Iterable[DataPoint], gaps: Sequence[ProportionGap], sent_count: int
    ) -> list[DataPoint]:
        """The top scorers: the first of them, and those tied with it when the score is positive."""
        best_score, best = -1.0, []
        for candidate in candidates:
            score = self.score_candidate_point(candidate, gaps, sent_count)
            if score > best_score:
                best_score, best = score, [candidate]
            elif score == best_score and score > 0:
                best.append(candidate)
        return best

    def simulate_proportion_update(
        self, current_sent_proportions: Mapping[str, Any], selected_point: DataPoint, total_sent_count: int
    ) -> Proportions:
        """A copy of the sent proportions with ``selected_point`` counted in, and ``"_total_count"`` set.

        A feature not there yet starts from this value (categorical for a string, numeric
        otherwise); a categorical's shares and a numeric's average take one more value. A
        point without vector values changes nothing (and sets no ``"_total_count"``).
        """
        updated: Proportions = copy.deepcopy(dict(current_sent_proportions))
        if not selected_point.vector_values:
            return updated
        for name, value in selected_point.vector_values.items():
            if name not in updated:
                updated[name] = _first_summary(value)
                continue
            summary = updated[name]
            kind = summary.get("type")
            if kind == "categorical":
                _count_category(summary, value)
            elif kind == "numeric":
                _count_numeric(summary, float(value))
        updated["_total_count"] = total_sent_count + 1
        return updated

    def _break_ties(self, candidates: Sequence[DataPoint]) -> DataPoint:
        """One of equally scoring candidates, drawn with :func:`random.choice` (the seed's private helper)."""
        return candidates[0] if len(candidates) == 1 else random.choice(candidates)


def _first_summary(value: Any) -> dict[str, Any]:
    """The summary of a feature's first sent value: categorical for a string, numeric otherwise."""
    if isinstance(value, str):
        return {"type": "categorical", "categories": {value: 1.0}, "total_count": 1}
    return {"type": "numeric", _AVERAGE: float(value), "total_count": 1}


def _count_category(summary: dict[str, Any], value: Any) -> None:
    """Count one more ``value`` into a categorical summary's shares and total, in place. As the seed: the value's
    share is found by a dict lookup (by identity first), but raised only where a category ``==`` it, so a NaN
    already there keeps its count (NaN equals nothing) and a new one is added beside it."""
    shares = summary.get("categories", {})
    total = summary.get("total_count", 0)
    new_total = total + 1
    new_count = shares.get(value, 0) * total + 1
    counted = {
        category: new_count / new_total if category == value else share * total / new_total
        for category, share in shares.items()
    }
    if value not in shares:
        counted[value] = 1.0 / new_total
    summary["categories"], summary["total_count"] = counted, new_total


def _count_numeric(summary: dict[str, Any], value: float) -> None:
    """Count one more ``value`` into a numeric summary's average and total, in place."""
    total = summary.get("total_count", 0)
    new_total = total + 1
    value_sum = summary.get(_AVERAGE, 0.0) * total + value
    summary[_AVERAGE], summary["total_count"] = (value_sum / new_total if new_total > 0 else value), new_total


class ProportionCalculator:
    """The seed's summaries of data points: each categorical's shares and each numeric's average."""

    def __init__(self) -> None:
        """Nothing to set up: the summaries keep no state (the seed's constructor, kept for its signature)."""

    def calculate_proportions(
        self,
        data_points: Sequence[DataPoint],
        variable_names: Iterable[str],
        grading_functions: Mapping[str, Any],
    ) -> Proportions:
        """Each named feature's summary over the points that have a value for it.

        A name without a grader in ``grading_functions``, or without any value, is left out;
        the grader's ``is_categorical()`` says which summary a feature gets.
        """
        if not data_points:
            return {}
        summaries: Proportions = {}
        for name in variable_names:
            if name not in grading_functions:
                continue
            values = [p.vector_values[name] for p in data_points if p.vector_values and name in p.vector_values]
            if not values:
                continue
            summary: dict[str, Any]
            if grading_functions[name].is_categorical():
                summary = {"type": "categorical", "categories": self.calculate_categorical_proportions(values)}
            else:
                summary = {"type": "numeric", _AVERAGE: self.calculate_numeric_average([float(v) for v in values])}
            summaries[name] = {**summary, "total_count": len(values)}
        return summaries

    def calculate_categorical_proportions(self, values: Sequence[Any]) -> dict[Any, float]:
        """Each value's share of ``values``, in order of first appearance ({} when empty)."""
        if not values:
            return {}
        return {value: count / len(values) for value, count in Counter(values).items()}

    def calculate_numeric_average(self, values: Sequence[float]) -> float:
        """The mean of ``values``, summed in order as the seed did (0.0 when empty)."""
        return sum(values) / len(values) if values else 0.0

    def merge_proportions(
        self,
        props1: Mapping[str, Any],
        props2: Mapping[str, Any],
        weight1: float = 0.5,
        weight2: float = 0.5,
    ) -> Proportions:
        """The weighted mean of two summaries' shares and averages; the weights are scaled to sum to 1.

        Weights that do not sum to a positive number count 0.5 each. A feature in one summary
        only is copied; the total counts add up. An empty summary gives a copy of the other.
        """
        if not props1:
            return copy.deepcopy(dict(props2))
        if not props2:
            return copy.deepcopy(dict(props1))
        total_weight = weight1 + weight2
        w1, w2 = (weight1 / total_weight, weight2 / total_weight) if total_weight > 0 else (0.5, 0.5)
        merged: Proportions = {}
        for name in set(props1) | set(props2):
            first, second = props1.get(name, {}), props2.get(name, {})
            if not first or not second:
                if first or second:
                    merged[name] = copy.deepcopy(first or second)
                continue
            kind = first.get("type", second.get("type"))
            if kind not in ("categorical", "numeric"):
                continue
            total_count = first.get("total_count", 0) + second.get("total_count", 0)
            if kind == "categorical":
                shares1, shares2 = first.get("categories", {}), second.get("categories", {})
                shares = {c: shares1.get(c, 0.0) * w1 + shares2.get(c, 0.0) * w2 for c in set(shares1) | set(shares2)}
                merged[name] = {"type": "categorical", "categories": shares, "total_count": total_count}
            else:
                average = first.get(_AVERAGE, 0.0) * w1 + second.get(_AVERAGE, 0.0) * w2
                merged[name] = {"type": "numeric", _AVERAGE: average, "total_count": total_count}
        return merged

    def proportions_distance(self, props1: Mapping[str, Any], props2: Mapping[str, Any]) -> float:
        """How far apart two summaries are: 0.0 when the same, ``inf`` when just one is empty.

        Sums, over features, the squared differences of the category shares, and of the averages
        divided by the larger magnitude (at least 1); a feature in only one of them adds 1.
        Where the seed raised ``OverflowError`` (a squared share difference beyond the float
        range) this gives ``inf``.
        """
        if not props1 and not props2:
            return 0.0
        if not props1 or not props2:
            return float("inf")
        distance = 0.0
        for name in set(props1) | set(props2):
            first, second = props1.get(name, {}), props2.get(name, {})
            if not first or not second:
                distance += 1.0
                continue
            kind = first.get("type", second.get("type"))
            if kind == "categorical":
                shares1, shares2 = first.get("categories", {}), second.get("categories", {})
                categories = list(set(shares1) | set(shares2))
                first_shares = np.array([shares1.get(c, 0.0) for c in categories], dtype=float)
                second_shares = np.array([shares2.get(c, 0.0) for c in categories], dtype=float)
                with np.errstate(over="ignore", invalid="ignore"):  # inf, or NaN, as the floats go
                    distance += float(np.sum(np.square(first_shares - second_shares)))
            elif kind == "numeric":
                avg1, avg2 = first.get(_AVERAGE, 0.0), second.get(_AVERAGE, 0.0)
                scale = max(abs(avg1), abs(avg2), 1.0)
                distance += ((avg1 - avg2) / scale) ** 2
        return distance
