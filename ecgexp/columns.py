"""The column names of a predictions table, in one place.

A predictions table (a run's ``predictions_<split>.csv``, an ``ecgexp-predict`` table, a table
of outputs made elsewhere) has one row per exam: ``exam_id``, then for each output name of the
task's objective (a label such as ``AF``, a target such as ``age``) the columns

- ``score_<name>``: what the network predicts (a probability, a value in the target's units);
- ``target_<name>``: the true value, where the exams have one;
- ``label_<name>``: the 0/1 decision at the label's threshold (binary labels, when thresholds
  are known),

and the columns of each kind of task, which its objective lists (``prediction_columns``):

- regression: ``predicted_<target>`` (the point prediction; with a Gaussian head also
  ``mean_<target>`` and ``std_<target>``), and the gap column a task may name (``age_gap``);
- classes: ``prob_<class>`` (multi-class), ``prob_bucket<k>``, ``prob_above<k>`` (ordinal);
- survival: ``risk_score`` and ``survival_at_<horizon>``.

Everything else builds and reads these names through this module.
"""

from __future__ import annotations

from collections.abc import Iterable

SCORE, TARGET, LABEL = "score_", "target_", "label_"
PREDICTED, MEAN, STD, PROBABILITY = "predicted_", "mean_", "std_", "prob_"
RISK = "risk_score"


def score_of(name: str) -> str:
    """The column of the network's prediction for ``name``."""
    return SCORE + name


def target_of(name: str) -> str:
    """The column of the true value of ``name``."""
    return TARGET + name


def label_of(name: str) -> str:
    """The column of the 0/1 decision for label ``name`` at its threshold."""
    return LABEL + name


def names_with(columns: Iterable[str], prefix: str) -> list[str]:
    """The names of the columns that start with ``prefix`` (:data:`SCORE`, :data:`TARGET` or
    :data:`LABEL`), in the order of ``columns``."""
    return [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]


def scored_names(columns: Iterable[str]) -> list[str]:
    """The names that have a score column, in column order."""
    return names_with(columns, SCORE)


def predicted_of(target: str) -> str:
    """The column of a regression's point prediction of ``target`` (in its units)."""
    return PREDICTED + target


def mean_of(target: str) -> str:
    """The column of a Gaussian head's predicted mean of ``target``."""
    return MEAN + target


def std_of(target: str) -> str:
    """The column of a Gaussian head's predicted standard deviation of ``target``."""
    return STD + target


def probability_of(outcome: str) -> str:
    """The column of the predicted probability of ``outcome`` (a class, ``bucket<k>``,
    ``above<k>``)."""
    return PROBABILITY + outcome


def survival_at(horizon: float) -> str:
    """The column of the predicted survival probability at ``horizon``: ``survival_at_5``."""
    return f"survival_at_{horizon:g}"
