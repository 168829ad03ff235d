import numpy as np
import tifffile
from scipy import ndimage as ndi

from cellmae.data.qc import QCConfig, focus_score, qc_crops
from cellmae.data.tiling import crops_at


def _fly_dna(example_fly_dir) -> np.ndarray:
    return tifffile.imread(example_fly_dir / "01_POS076_D.TIF")


def test_focus_score_drops_with_blur_on_real_nuclei(example_fly_dir) -> None:
    crop = _fly_dna(example_fly_dir)[300:556, 300:556]
    sharp = focus_score(crop)
    blurred = focus_score(ndi.gaussian_filter(crop.astype(np.float32), 2))
    assert sharp > QCConfig().min_focus > blurred
    assert focus_score(np.full((32, 32), 7, np.uint8)) == 0.0


def test_qc_keeps_cells_and_drops_empty_and_blurred_crops(example_fly_dir) -> None:
    dna = _fly_dna(example_fly_dir)
    field = np.stack([dna, dna])
    blurred = np.rint(ndi.gaussian_filter(dna.astype(np.float32), 3)).astype(np.uint8)
    field[1] = dna
    crops = crops_at(field, [(300, 300), (0, 0)], 256)
    blank = np.zeros_like(crops[:1])
    blur = np.stack([blurred[300:556, 300:556]] * 2)[None]
    allc = np.concatenate([crops[:1], blank, blur])
    keep, empty = qc_crops(field, allc, ("DNA", "FITC"), QCConfig())
    assert keep.tolist() == [True, False, False]
    assert empty.tolist() == [False, True, False]


def test_empty_field_is_empty_everywhere_and_channel_choice() -> None:
    rng = np.random.default_rng(0)
    field = np.stack([rng.integers(10, 13, (64, 64)), rng.integers(0, 256, (64, 64))]).astype(np.uint8)
    crops = crops_at(field, [(0, 0), (32, 32)], 32)
    keep, empty = qc_crops(field, crops, ("DNA", "Mito"), QCConfig())
    assert not keep.any() and empty.all()
    # measured on the noisy channel instead, the crops have foreground
    keep2, empty2 = qc_crops(field, crops, ("DNA", "Mito"), QCConfig(channel="Mito", min_focus=0))
    assert keep2.all() and not empty2.any()
