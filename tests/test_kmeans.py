"""memfuse.kmeans: the memory initialisation."""

import numpy as np
import pytest

from memfuse.kmeans import kmeans


# ---------------------------------------------------------------- K-Means
def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (100, 2)) for c in centres]).astype(np.float32)
    found, inertia = kmeans(x, 3, seed=0, chunk=50)
    found = found[np.lexsort(found.T[::-1])]
    np.testing.assert_allclose(found, centres[np.lexsort(centres.T[::-1])], atol=0.1)
    again, _ = kmeans(x, 3, seed=0)
    assert inertia < 300 * 0.05 and np.allclose(np.sort(again, 0), np.sort(found, 0))


def test_kmeans_fits_a_sample_of_large_inputs_but_measures_all_rows():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (400, 2)) for c in centres]).astype(np.float32)
    found, inertia = kmeans(x, 3, seed=0, max_points_per_cluster=20)  # fitted on 60 of 1200 rows
    np.testing.assert_allclose(np.sort(found, 0), np.sort(centres, 0), atol=0.1)
    all_rows = ((x[:, None, :] - found[None]) ** 2).sum(-1).min(1).sum()
    assert inertia == pytest.approx(all_rows, rel=1e-4)


def test_kmeans_says_so_when_there_are_fewer_distinct_rows_than_centres():
    """A collapsed autoencoder gives every object one code (seed 2 on Ped2 at lr 1e-2);
    k-means++ must name the problem instead of failing inside torch.multinomial."""
    x = np.tile(np.array([[0.5, -0.25]], dtype=np.float32), (50, 1))
    x[:3] += np.arange(3, dtype=np.float32)[:, None]  # 3 distinct rows (row 0 equals the rest)
    with pytest.raises(ValueError, match="only 3 distinct rows for k = 5"):
        kmeans(x, 5, seed=0)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kmeans(x, 5, seed=0)
