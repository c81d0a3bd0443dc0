"""extremefast.pseudo.geodesic: shortest paths against the csgraph reference, and the scribbles."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from extremefast.pseudo import geodesic_scribbles, shortest_path
from extremefast.pseudo.geodesic_ref import shortest_path_ref


@pytest.mark.parametrize("shape", [(6, 7, 8), (12, 9, 10), (1, 12, 9), (15, 2, 11)])
@pytest.mark.parametrize("plateau", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_geodesic_paths_match_csgraph_reference(rng, shape, plateau, bidirectional):
    cost = rng.random(shape) + 0.01
    if plateau:
        cost[:, : shape[1] // 2] = 0.0  # zero-cost plateau
    src, dst = (0, 0, 0), tuple(s - 1 for s in shape)  # corners: points on the image border
    path, total = shortest_path(cost, src, dst, (1.0, 1.5, 2.0), bidirectional=bidirectional)
    _, ref_total = shortest_path_ref(cost, src, dst, (1.0, 1.5, 2.0))
    assert total == pytest.approx(ref_total, rel=1e-12, abs=1e-12)
    assert tuple(path[0]) == src and tuple(path[-1]) == dst
    steps = np.abs(np.diff(path, axis=0))
    assert steps.max() <= 1 and (steps.sum(axis=1) > 0).all()
    # the path's own cost equals the reported optimum
    lengths = np.sqrt(((np.diff(path, axis=0) * [1.0, 1.5, 2.0]) ** 2).sum(1))
    own = (lengths * 0.5 * (cost[tuple(path[:-1].T)] + cost[tuple(path[1:].T)])).sum()
    assert own == pytest.approx(ref_total, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_geodesic_paths_exact_on_costs_spanning_twelve_decades(rng, bidirectional):
    """Heap keys are truncated distances: near-equal keys may pop out of order, and the
    search must still return the exact optimum (a node improved late is expanded again)."""
    cost = 10.0 ** rng.uniform(-12, 0, size=(14, 13, 12))
    cost[3:9, 2:10, 4:8] = 0.0
    for _ in range(15):
        src, dst = (tuple(int(rng.integers(0, s)) for s in cost.shape) for _ in range(2))
        path, total = shortest_path(cost, src, dst, (0.7, 1.0, 2.5), bidirectional=bidirectional)
        _, ref_total = shortest_path_ref(cost, src, dst, (0.7, 1.0, 2.5))
        assert total == pytest.approx(ref_total, rel=1e-12, abs=1e-300)
        assert tuple(path[0]) == src and tuple(path[-1]) == dst


def test_scribbles_connect_each_pair():
    cost = np.ones((20, 21, 22))
    pts = np.array([[0, 10, 11], [19, 10, 11], [10, 0, 11], [10, 20, 11], [10, 10, 0], [10, 10, 21]])
    s = geodesic_scribbles(cost, pts)
    assert all(s[tuple(p)] for p in pts)
    assert ndi.label(s, structure=np.ones((3, 3, 3)))[1] == 1
