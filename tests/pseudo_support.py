"""Shapes shared by the tests of extremefast.pseudo."""
from __future__ import annotations

import numpy as np


def ellipsoid(shape=(30, 28, 26), radii=(9, 7, 6)):
    """An ellipsoid mask of ``radii`` at the centre of ``shape``."""
    grid = np.indices(shape).astype(float)
    c = np.array(shape)[:, None, None, None] / 2
    r = np.array(radii)[:, None, None, None]
    return (((grid - c) / r) ** 2).sum(0) <= 1
