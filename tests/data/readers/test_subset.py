"""Screen.subset: the fields of listed wells, read through the parent screen."""

import numpy as np
import pytest

from cellmae.data import schema as S
from cellmae.data.readers import open_screen


def test_subset_keeps_listed_wells_in_order_and_reads_the_same_pixels(make_rxrx) -> None:
    root, fields = make_rxrx()
    screen = open_screen(root)
    keys = screen.metadata[list(S.WELL_KEYS)].astype(str).drop_duplicates().to_numpy()
    wanted = {tuple(keys[0]), tuple(keys[2])}
    sub = screen.subset(wanted | {("nope", "1", "Z99")})  # an unknown well is ignored
    assert sub.channels == screen.channels
    got = {tuple(k) for k in sub.metadata[list(S.WELL_KEYS)].astype(str).to_numpy()}
    assert got == wanted and len(sub) == 2 * len(wanted)  # 2 sites per well in the fixture
    for i in range(len(sub)):
        m = sub.metadata.iloc[i]
        key = (m[S.EXPERIMENT], m[S.PLATE], m[S.WELL], m[S.SITE])
        np.testing.assert_array_equal(sub.read_field(i), fields[key])
    with pytest.raises(ValueError, match="none of the 1 wells of the well list"):
        screen.subset({("nope", "1", "Z99")})
