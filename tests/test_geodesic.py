"""extremefast.pseudo.geodesic: shortest paths against the csgraph reference, and the scribbles."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from extremefast.errors import InputError
from extremefast.pseudo import geodesic_scribbles, shortest_path
from extremefast.pseudo.geodesic import geodesic_scribble_sets
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


@pytest.mark.parametrize("workers", [1, 2, 6])
def test_path_sets_on_one_pool_equal_separate_searches(workers):
    """geodesic_scribble_sets searches every cost's three paths on one pool: each mask is the
    one geodesic_scribbles gives for that cost alone, on one thread."""
    rng = np.random.default_rng(5)
    costs = [rng.random((30, 26, 22)) + 0.05, rng.random((30, 26, 22)) ** 2 + 0.01]
    pts = np.array([[2, 13, 11], [27, 12, 10], [15, 1, 9], [14, 24, 12], [16, 12, 1], [13, 14, 20]])
    sets = geodesic_scribble_sets(costs, pts, workers=workers)
    assert len(sets) == 2
    for cost, scribble in zip(costs, sets):
        np.testing.assert_array_equal(scribble, geodesic_scribbles(cost, pts, workers=1))
    with pytest.raises(InputError, match="costs of one shape"):
        geodesic_scribble_sets([costs[0], costs[0][:-1]], pts)

