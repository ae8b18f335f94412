"""Agreement between two readers (or a reader and the network): Cohen's kappa and McNemar's test.

As in automatic-ecg-diagnosis (docs/studies.md §3.1): kappa compares the two readers' labels
directly; McNemar compares their **correctness** against a reference (the gold standard) and
uses no continuity correction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2

from ecgexp.evaluation.binary import scores_at_threshold


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"agreement: expected two label vectors of one length; got shapes "
                         f"{a.shape} and {b.shape}")
    return a, b


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa ``(p_o - p_e) / (1 - p_e)`` of two label vectors ``(n,)`` (binary or
    multi-class, any hashable labels).

    ``p_o`` is the observed agreement and ``p_e = sum_k P(a = k) P(b = k)`` the agreement
    expected by chance from the two readers' marginals. NaN when ``p_e == 1`` (both readers
    give one and the same label to every exam) or without exams. Computed in float64 from the
    contingency table; torchmetrics' ``binary_cohen_kappa`` gives the same value in float32.
    """
    a, b = _pair(a, b)
    if len(a) == 0:
        return float("nan")
    classes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    table = np.zeros((len(classes), len(classes)))
    np.add.at(table, (codes[:len(a)], codes[len(a):]), 1)
    table /= len(a)
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(observed - expected) / (1 - expected))


def mcnemar(a: np.ndarray, b: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """McNemar's test of two paired predictors ``(n,)``, without continuity correction.

    Without ``truth`` (binary 0/1 labels): ``b = #(a = 1, b = 0)`` and ``c = #(a = 0, b = 1)``,
    the discordant pairs of the labels themselves. With ``truth`` (the published use, any
    labels): ``b = #(a right, b wrong)`` and ``c = #(a wrong, b right)``, the exams on which
    exactly one predictor agrees with the reference (the published code names them the other way
    round; the statistic is symmetric).

    Returns ``{"statistic": (b - c)**2 / (b + c), "p_value": chi2.sf(statistic, 1), "b", "c"}``.
    Without discordant exams (``b + c == 0``) the statistic is 0 and the p-value 1, where the
    published code would give NaN (0 / 0).
    """
    a, b = _pair(a, b)
    if truth is None:
        if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
            raise ValueError("agreement: McNemar without truth compares binary 0/1 labels")
        first, second = a == 1, b == 1
    else:
        truth, _ = _pair(truth, a)
        first, second = a == truth, b == truth
    discordant_b = int(np.sum(first & ~second))
    discordant_c = int(np.sum(~first & second))
    total = discordant_b + discordant_c
    statistic = (discordant_b - discordant_c) ** 2 / total if total else 0.0
    return {"statistic": float(statistic), "p_value": float(chi2.sf(statistic, 1)),
            "b": discordant_b, "c": discordant_c}


def agreement_analyses(predicted: pd.DataFrame, others: dict[str, pd.DataFrame],
                       truth: pd.DataFrame, labels: list[str]) -> dict[str, pd.DataFrame]:
    """Each annotation set's scores against the truth, and κ / McNemar against ``predicted``
    (0/1 tables in the same row order, one column per label): the ``reader_scores`` and
    ``agreement`` tables of ``ecgexp-evaluate compare=``."""
    scores, agreement = [], []
    for name, table in {"model": predicted, **others}.items():
        for label in labels:
            scores.append({"predictor": name, "label": label, **scores_at_threshold(
                table[label].to_numpy(), truth[label].to_numpy().astype(int), 0.5)})
            if name != "model":
                test = mcnemar(predicted[label].to_numpy(), table[label].to_numpy(),
                               truth[label].to_numpy())
                agreement.append({"pair": f"model vs {name}", "label": label,
                                  "kappa": cohen_kappa(predicted[label].to_numpy(),
                                                       table[label].to_numpy()),
                                  "mcnemar_statistic": test["statistic"],
                                  "mcnemar_p": test["p_value"]})
    return {"reader_scores": pd.DataFrame(scores), "agreement": pd.DataFrame(agreement)}
