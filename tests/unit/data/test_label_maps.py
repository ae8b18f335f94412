"""``ecgexp.data.label_maps``: label columns from the diagnosis codes of record headers, with
the codes no label takes and the records without codes reported."""

import logging

import numpy as np
import pandas as pd
import pytest

from ecgexp.data.label_maps import LabelMap
from ecgexp.errors import UserError

RBBB_CODES = [59118001, 713427006]  # two SNOMED codes of one finding, listed together


def test_each_label_is_1_when_a_record_holds_one_of_its_codes(caplog):
    label_map = LabelMap("snomed_test", "dx", {"RBBB": RBBB_CODES, "AF": ["164889003"]})
    headers = pd.DataFrame({"record": ["r1", "r2", "r3", "r4", "r5"],
                            "dx": ["59118001,426177001", " 713427006 ", "164889003,59118001",
                                   np.nan, 426783006]})
    with caplog.at_level(logging.INFO, logger="ecgexp.data.label_maps"):
        labelled = label_map.apply(headers, "cinc2021/")
    assert labelled.RBBB.tolist()[:3] == [1, 1, 1] and labelled.AF.tolist()[:3] == [0, 0, 1]
    assert labelled.RBBB.tolist()[4] == 0 and labelled.AF.tolist()[4] == 0
    assert pd.isna(labelled.RBBB[3]) and pd.isna(labelled.AF[3])  # no Dx field: missing
    assert "RBBB" not in headers  # the table given is not changed
    messages = [r.getMessage() for r in caplog.records]
    assert ("labels=snomed_test: 2 codes of 4 records under cinc2021/ map to no label: "
            "426177001 (1), 426783006 (1)") in messages
    assert ("labels=snomed_test: 1 records under cinc2021/ have no 'dx' field; their labels "
            "are missing") in messages


def test_a_map_without_labels_or_headers_without_the_field_are_named():
    with pytest.raises(UserError, match=r"^labels=empty: the map lists no labels$"):
        LabelMap("empty", "dx", {})
    with pytest.raises(UserError, match=r"^labels=snomed: the headers under data/ have no 'dx' "
                                        r"field \(e.g. '# Dx:'\), so no label can be read$"):
        LabelMap("snomed", "dx", {"AF": [1]}).apply(pd.DataFrame({"age": [50]}), "data/")
