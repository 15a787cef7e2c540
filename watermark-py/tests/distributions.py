"""How the device path's tournament rows are compared with the core's (shared by
tests/ and tests-vllm/): a floating-point distribution whose sums a device may
order differently from the core."""

import math

import numpy as np


def assert_same_distribution(got, want):
    """The same distribution: total variation at most 1e-12, and
    log-probabilities within the golden vectors' tolerance (2e-6 relative)
    wherever the core's probability is at least 1e-9. Below that, 1 - P1
    cancels when P1 is near 1, and a probability under 1e-12 may come out as
    exactly 0 (-inf) on one side and not on the other."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert 0.5 * np.abs(np.exp(got) - np.exp(want)).sum() <= 1e-12
    visible = np.isfinite(want) & (want > math.log(1e-9))
    assert np.isfinite(got[visible]).all()
    assert np.allclose(got[visible], want[visible], rtol=2e-6, atol=2e-6)
    # Every finite entry on either side is a candidate of the core (never a token outside the top k).
    assert not (np.isfinite(got) & ~np.isfinite(want) & (got > math.log(1e-12))).any()
