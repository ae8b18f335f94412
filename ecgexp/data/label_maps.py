"""Label columns from the diagnosis codes in record headers (``# Dx: 59118001,426177001``):
a label map is data (a YAML file of the ``labels`` config group) naming, for each label
column, the codes that make it positive."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from ecgexp.errors import UserError

log = logging.getLogger(__name__)


class LabelMap:
    """Label columns (0/1) from a header field of codes.

    Args:
        name: the map's name, for messages (the ``labels`` option).
        field: the header column holding the codes (``dx`` for ``# Dx:``), comma-separated.
        labels: label column -> the codes that make it 1 (equivalent codes listed together,
            e.g. RBBB: [59118001, 713427006]).
    """

    def __init__(self, name: str, field: str, labels: Mapping[str, Sequence]):
        self.name, self.field = name, field
        self.labels = {label: {str(code).strip() for code in codes}
                       for label, codes in labels.items()}
        if not self.labels:
            raise UserError(f"labels={name}: the map lists no labels")

    def apply(self, table: pd.DataFrame, where: str) -> pd.DataFrame:
        """``table`` with one 0/1 column per label (missing where a record has no
        ``field``); the codes no label takes are counted and listed in the log."""
        if self.field not in table.columns:
            raise UserError(f"labels={self.name}: the headers under {where} have no "
                            f"'{self.field}' field (e.g. '# Dx:'), so no label can be read")
        codes = table[self.field].map(_codes)
        out = table.copy()
        for label, positive in self.labels.items():
            out[label] = codes.map(lambda c, p=positive: None if c is None else int(bool(c & p)))
        known = set().union(*self.labels.values())
        unknown = Counter(code for record in codes.dropna() for code in record - known)
        missing = int(codes.isna().sum())
        if unknown:
            listed = ", ".join(f"{code} ({count})" for code, count in unknown.most_common())
            log.info("labels=%s: %d codes of %d records under %s map to no label: %s",
                     self.name, len(unknown), int(codes.notna().sum()), where, listed)
        if missing:
            log.warning("labels=%s: %d records under %s have no '%s' field; their labels are "
                        "missing", self.name, missing, where, self.field)
        return out


def _codes(value) -> frozenset | None:
    """The set of codes in a header value (``59118001,426177001``, one integer code, or
    missing)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return frozenset(c.strip() for c in str(value).split(",") if c.strip())
