"""extremefast.pseudo.gaussians: the point channel."""
from __future__ import annotations

import numpy as np
import pytest

from extremefast.pseudo import point_channel


def test_point_channel_peaks_at_points():
    pts = np.array([[5.0, 6.0, 7.0], [20.0, 10.0, 3.0]])
    pc = point_channel(pts, (24, 16, 12), sigma=2.0)
    assert pc.max() <= 1.0 and pc[5, 6, 7] == pytest.approx(1.0, abs=1e-3)
    assert pc[0, 15, 11] < 1e-3
