"""Contract check across packages: the simulator's RxRx layout is read by the RxRx reader."""

import numpy as np
from PIL import Image

from cellmae.data import schema as S
from cellmae.data.readers import RxRxScreen, open_screen
from cellmae.data.simulate import simulate_screen


def test_simulated_tiny_screen_reads_through_the_rxrx_reader(tmp_path) -> None:
    root = simulate_screen(tmp_path / "sim", preset="tiny", seed=0)
    screen = open_screen(root)
    assert isinstance(screen, RxRxScreen) and len(screen) > 0
    m = screen.metadata
    assert set(m[S.PERTURBATION_TYPE]) <= S.PERTURBATION_TYPES and m[S.IS_CONTROL].any() and not m[S.IS_CONTROL].all()
    img = screen.read_field(0)
    assert img.dtype == np.uint8 and img.shape[0] == len(screen.channels)
    w2 = np.asarray(Image.open(screen.path(0)[1]))
    np.testing.assert_array_equal(img[1], w2)
