"""Agreement between two readers (or a reader and the network): Cohen's kappa and McNemar's test.

As in automatic-ecg-diagnosis (docs/studies.md §3.1): kappa compares the two readers' labels
directly; McNemar compares their **correctness** against a reference (the gold standard) and
uses no continuity correction.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2


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


def agreement_table(annotations: Mapping[str, pd.DataFrame], labels: Sequence[str],
                    pairs: Sequence[tuple[str, str]] | None = None,
                    truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Kappa and McNemar for every pair of readers and every label.

    ``annotations[name]`` has one 0/1 column per label, rows aligned across readers (and with
    ``truth``). ``pairs`` defaults to every combination in the order of ``annotations``. Kappa
    compares the two readers; McNemar compares their correctness against ``truth`` when given
    (the published tables), else their labels. Returns a DataFrame indexed by
    ``(pair, label)``, pair ``"<a> vs <b>"``, with columns ``kappa``, ``mcnemar_statistic``,
    ``mcnemar_p``, ``b`` and ``c`` (see ``mcnemar``).
    """
    pairs = list(itertools.combinations(annotations, 2)) if pairs is None else list(pairs)
    unknown = sorted({name for pair in pairs for name in pair} - set(annotations))
    if unknown:
        raise ValueError(f"agreement: pairs name unknown readers {unknown}; "
                         f"known: {list(annotations)}")
    rows, index = [], []
    for first, second in pairs:
        for label in labels:
            a = annotations[first][label].to_numpy()
            b = annotations[second][label].to_numpy()
            test = mcnemar(a, b, None if truth is None else truth[label].to_numpy())
            rows.append({"kappa": cohen_kappa(a, b), "mcnemar_statistic": test["statistic"],
                         "mcnemar_p": test["p_value"], "b": test["b"], "c": test["c"]})
            index.append((f"{first} vs {second}", label))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["pair", "label"]))
