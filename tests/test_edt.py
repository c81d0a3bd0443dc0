"""extremefast.pseudo.edt: the compiled distance transform against scipy's."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi



@pytest.mark.parametrize("shape,sampling,fraction", [((7, 9, 11), None, 0.9), ((20, 1, 13), (1.0, 2.0, 0.5), 0.95),
                                                     ((30, 25, 20), (0.78, 0.78, 5.0), 0.99), ((17, 23), None, 0.97),
                                                     ((40,), (0.3,), 0.8), ((3, 4, 5), None, 0.0)])
def test_compiled_distance_transform_equals_scipy(rng, shape, sampling, fraction):
    from extremefast.pseudo.edt import squared_distance_to_background

    mask = rng.random(shape) < fraction
    mask.flat[0] = False  # at least one background voxel
    ref = ndi.distance_transform_edt(mask, sampling=sampling) ** 2
    np.testing.assert_allclose(squared_distance_to_background(mask, sampling), ref, rtol=1e-12, atol=1e-12)
    assert np.isinf(squared_distance_to_background(np.ones(shape, bool), sampling)).all()
