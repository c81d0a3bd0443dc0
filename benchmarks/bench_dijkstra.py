"""Three geodesic paths (one per axis pair) on the same 128^3 gradient-magnitude cost:
extremefast (Numba, bidirectional, search confined to the clicks' box; with threads and on
one thread) vs
``skimage.graph.route_through_array`` and the ``dijkstra3d`` package.

Correctness: each path joins its two points; extremefast's path cost equals the
scipy.sparse.csgraph optimum (checked on a 48^3 sub-volume) and is no higher, under
extremefast's edge cost, than the baselines' paths.
"""
from __future__ import annotations

import numpy as np
from _harness import parser, realistic_crop, report, timeit


def path_cost(cost, path, spacing=(1.0, 1.0, 1.0)):
    path = np.asarray(path)
    lengths = np.sqrt(((np.diff(path, axis=0) * np.asarray(spacing)) ** 2).sum(1))
    return float((lengths * 0.5 * (cost[tuple(path[:-1].T)] + cost[tuple(path[1:].T)])).sum())


def main():
    args = parser(__doc__).parse_args()
    import dijkstra3d
    from skimage.graph import route_through_array

    from extremefast.pseudo.geodesic import geodesic_scribbles, shortest_path
    from extremefast.pseudo.geodesic_ref import shortest_path_ref

    _, _, cost, pts, _ = realistic_crop()
    # correctness first
    sub = np.ascontiguousarray(cost[:48, :48, :48])
    a, b = (2, 3, 4), (45, 40, 44)
    assert abs(shortest_path(sub, a, b)[1] - shortest_path_ref(sub, a, b)[1]) < 1e-9
    pairs = [(pts[2 * k], pts[2 * k + 1]) for k in range(3)]
    ours_paths = [shortest_path(cost, s, t)[0] for s, t in pairs]
    rta = [np.array(route_through_array(cost, tuple(s), tuple(t), fully_connected=True, geometric=True)[0])
           for s, t in pairs]
    c32 = cost.astype(np.float32)
    d3d = [dijkstra3d.dijkstra(c32, s, t, connectivity=26, bidirectional=True) for s, t in pairs]
    for mine, *others in zip(ours_paths, rta, d3d):
        for other in others:
            assert path_cost(cost, mine) <= path_cost(cost, other) + 1e-9
    runs = {
        "extremefast (three paths, box-confined, threads)": lambda: geodesic_scribbles(cost, pts),
        "extremefast (three paths, box-confined, one thread)": lambda: geodesic_scribbles(cost, pts, workers=1),
        "extremefast (three paths, whole crop, one thread)": lambda: [shortest_path(cost, s, t) for s, t in pairs],
        "skimage route_through_array": lambda: [route_through_array(cost, tuple(s), tuple(t), fully_connected=True,
                                                                    geometric=True) for s, t in pairs],
        "dijkstra3d (bidirectional)": lambda: [dijkstra3d.dijkstra(c32, s, t, connectivity=26, bidirectional=True)
                                               for s, t in pairs],
        "dijkstra3d": lambda: [dijkstra3d.dijkstra(c32, s, t, connectivity=26) for s, t in pairs],
    }
    times = {k: timeit(f, repeat=args.repeat) for k, f in runs.items()}
    ours = times["extremefast (three paths, box-confined, threads)"]
    rows = [{"method": k, "seconds": v, "ratio to extremefast": v / ours} for k, v in times.items()]
    report("geodesic scribbles: three shortest paths on a 128^3 crop (phantom liver)", rows, args)


if __name__ == "__main__":
    main()
