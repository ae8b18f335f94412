"""Lead names: the canonical 12-lead order and mapping between declared orders."""

from __future__ import annotations

from collections.abc import Sequence

CANONICAL_LEADS = ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
_ALIASES = {"I": "DI", "II": "DII", "III": "DIII", "AVR": "AVR", "AVL": "AVL", "AVF": "AVF"}


def normalise_lead_name(name: str) -> str:
    """Upper-cases a lead name and maps I/II/III to DI/DII/DIII."""
    upper = str(name).strip().upper()
    return _ALIASES.get(upper, upper)


def lead_indices(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions in ``available`` of each lead of ``wanted``; fails loudly on a missing lead."""
    available_names = [normalise_lead_name(lead) for lead in available]
    if len(set(available_names)) != len(available_names):
        raise ValueError(f"dataset.leads: duplicate lead names in {list(available)}")
    missing = [lead for lead in wanted if normalise_lead_name(lead) not in available_names]
    if missing:
        raise ValueError(f"preprocessing.leads: lead(s) {missing} not in the dataset's leads "
                         f"{list(available)} (dataset.leads)")
    return [available_names.index(normalise_lead_name(lead)) for lead in wanted]
