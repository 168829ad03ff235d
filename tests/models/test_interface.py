"""The shared pieces of the model interface: which blocks, and the fixed-channel check."""

import numpy as np
import pytest

from cellmae.models.interface import check_channels, resolve_blocks


def test_resolve_blocks_reads_every_form_the_same_way():
    assert resolve_blocks("all", 4) == [1, 2, 3, 4]
    assert resolve_blocks("last", 4) == [4]
    assert resolve_blocks(2, 4) == [2]
    assert resolve_blocks([4, 2, 2, np.int64(1)], 4) == [1, 2, 4]
    for bad, match in ((0, "out of range"), ([5], "out of range"), ([True], "out of range"), ("first", "1-based"),
                       ([], "empty")):
        with pytest.raises(ValueError, match=match):
            resolve_blocks(bad, 4)


def test_check_channels_wants_names_and_count_in_order():
    assert check_channels(("DNA", "ER"), None, 2) == ("DNA", "ER")
    assert check_channels(("DNA", "ER"), ["DNA", "ER"], 2) == ("DNA", "ER")
    for given, n in ((["ER", "DNA"], 2), (["DNA", "ER"], 3), (None, 1)):
        with pytest.raises(ValueError, match=r"expects channels \['DNA', 'ER'\] in that order"):
            check_channels(("DNA", "ER"), given, n)
