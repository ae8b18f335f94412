"""``ecgexp.signal.leads``: lead names in any spelling, and the positions of the wanted leads
in a declared order."""

import pytest

from ecgexp.signal.leads import CANONICAL_LEADS, lead_indices, normalise_lead_name


@pytest.mark.parametrize("name, canonical", [("I", "DI"), ("ii", "DII"), (" III ", "DIII"),
                                             ("aVR", "AVR"), ("avl", "AVL"), ("v1", "V1"),
                                             ("DI", "DI"), ("V6", "V6")])
def test_lead_names_are_upper_case_with_limb_leads_as_di_dii_diii(name, canonical):
    assert normalise_lead_name(name) == canonical


def test_wanted_leads_are_found_in_any_declared_order_and_spelling():
    declared = ["V1", "I", "II", "aVF", "V6"]
    assert lead_indices(declared, ["DI", "DII", "AVF"]) == [1, 2, 3]
    assert lead_indices(declared, ["v6", "i"]) == [4, 1]
    assert lead_indices(CANONICAL_LEADS, CANONICAL_LEADS) == list(range(12))
    assert len(CANONICAL_LEADS) == 12 and CANONICAL_LEADS[:3] == ("DI", "DII", "DIII")


def test_missing_and_duplicate_leads_are_named():
    with pytest.raises(ValueError, match=r"^preprocessing.leads: lead\(s\) \['V2', 'V3'\] not in "
                                         r"the dataset's leads \['I', 'II'\] \(dataset.leads\)$"):
        lead_indices(["I", "II"], ["DI", "V2", "V3"])
    with pytest.raises(ValueError, match=r"^dataset.leads: duplicate lead names in "
                                         r"\['I', 'DI', 'V1'\]$"):
        lead_indices(["I", "DI", "V1"], ["V1"])
