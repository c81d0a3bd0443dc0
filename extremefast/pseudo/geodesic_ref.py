"""Plain reference for the geodesic paths: the same 26-neighbour graph as an explicit
sparse matrix, solved with ``scipy.sparse.csgraph.dijkstra``. Slow and memory-hungry;
for tests on small volumes."""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from .geodesic import neighbour_offsets


def shortest_path_ref(cost, source, target, spacing=(1.0, 1.0, 1.0)):
    cost = np.asarray(cost, dtype=np.float64)
    shape = cost.shape
    idx = np.arange(cost.size).reshape(shape)
    offs, lengths = neighbour_offsets(spacing)
    rows, cols, vals = [], [], []
    for off, length in zip(offs, lengths):
        src_sl = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(off, shape))
        dst_sl = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(off, shape))
        rows.append(idx[src_sl].ravel())
        cols.append(idx[dst_sl].ravel())
        vals.append(length * 0.5 * (cost[src_sl] + cost[dst_sl]).ravel())
    graph = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(cost.size, cost.size))
    s = int(np.ravel_multi_index(tuple(source), shape))
    t = int(np.ravel_multi_index(tuple(target), shape))
    dist, pred = dijkstra(graph, indices=s, return_predecessors=True)
    path = [t]
    while path[-1] != s:
        path.append(pred[path[-1]])
    path = np.array(path[::-1])
    return np.stack(np.unravel_index(path, shape), axis=1), float(dist[t])
