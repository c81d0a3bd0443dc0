"""extremefast.pseudo.clicks: the extreme points of a mask, simulated clicks, and the checks
every set of six clicks passes (extremefast.data.points.check_points)."""
from __future__ import annotations

import numpy as np
import pytest

from extremefast.errors import InputError
from extremefast.pseudo import check_points, extreme_points, simulate_clicks

from pseudo_support import ellipsoid


def test_extreme_points_lie_on_the_extremes():
    mask = ellipsoid()
    pts = extreme_points(mask)
    coords = np.argwhere(mask)
    for a in range(3):
        assert pts[2 * a, a] == coords[:, a].min() and pts[2 * a + 1, a] == coords[:, a].max()
        assert mask[tuple(pts[2 * a])] and mask[tuple(pts[2 * a + 1])]


def test_simulated_clicks_are_two_sided_inside_and_seeded():
    mask = ellipsoid((60, 60, 60), (25, 22, 20))
    pts = extreme_points(mask)
    offsets = []
    for s in range(200):
        clicks = simulate_clicks(pts, mask, (1.0, 1.0, 1.0), sigma_mm=2.0, rng=s)
        assert all(mask[tuple(p)] for p in clicks)
        offsets.append(clicks - pts)
    offsets = np.concatenate(offsets)
    # noise goes both ways along every axis (not only positive)
    for a in range(3):
        assert (offsets[:, a] < 0).any() and (offsets[:, a] > 0).any()
    np.testing.assert_array_equal(simulate_clicks(pts, mask, (1, 1, 1), 2.0, rng=7),
                                  simulate_clicks(pts, mask, (1, 1, 1), 2.0, rng=7))


@pytest.mark.parametrize("bad,match", [
    (lambda p: p[:5], "six"),
    (lambda p: np.vstack([p[:5], [[999, 0, 0]]]), "outside"),
    (lambda p: np.vstack([p[:1], p[:1], p[2:]]), "same voxel"),
    (lambda p: np.where(np.arange(18).reshape(6, 3) == 4, np.nan, p), "NaN"),
])
def test_bad_points(bad, match):
    pts = extreme_points(ellipsoid())
    with pytest.raises(InputError, match=match):
        check_points(bad(pts.astype(float)), (30, 28, 26))
