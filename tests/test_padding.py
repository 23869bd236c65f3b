"""memfuse.padding: per-frame object sets padded to N_max with a mask."""

import numpy as np
import pytest
from toys import ragged

from memfuse.padding import n_max_of, pad, velocity_per_object


# ---------------------------------------------------------------- padding and masks
def test_pad_layout_and_mask():
    r = ragged([[[1, 1]], [[2, 2], [3, 3], [4, 4]], np.zeros((0, 2))], 2)
    vals, padded = pad(r, 3)
    assert vals.shape == (3, 3, 2)
    np.testing.assert_array_equal(vals[1], [[2, 2], [3, 3], [4, 4]])
    np.testing.assert_array_equal(padded, [[False, True, True], [False, False, False], [False, True, True]])
    np.testing.assert_array_equal(vals[2], 0)  # an empty frame: one zero row, unmasked
    assert n_max_of(r) == 3


def test_pad_subset_and_truncation_warns():
    r = ragged([[[1]], [[2], [3], [4]]], 1)
    with pytest.warns(UserWarning):
        vals, padded = pad(r, 2, np.array([1]))
    np.testing.assert_array_equal(vals[0, :, 0], [2, 3])
    assert not padded.any()


def test_velocity_is_the_mean_over_orientation_bins():
    v = ragged([[[1, 3]], [[2, 2], [0, 4]]], 2)
    per_obj = velocity_per_object(v)
    np.testing.assert_allclose(per_obj.values[:, 0], [2, 2, 2])
