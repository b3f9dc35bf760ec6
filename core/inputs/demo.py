"""The embedded default feature set: scikit-learn's bundled 8x8 digits (offline, no download).

Pixel intensities are used as the "features" (L2-normalised); a seeded stratified 2:1 train/test split.
This lets ``featbench run`` print a real comparison on a fresh machine without any backbone or data.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .features import FeatureSet, l2_normalize


def digits_features(seed: int = 0, test_fraction: float = 1 / 3) -> FeatureSet:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "the embedded default needs scikit-learn", "pip install 'featbench[demo]' or pass --features"
        ) from None
    from .datasets import stratified_holdout

    data = load_digits()
    x = l2_normalize(data.data.astype(np.float32))
    y = data.target.astype(np.int64)
    tr, te = stratified_holdout(y, test_fraction, seed)
    return FeatureSet(
        name="digits-pixels",
        train_x=x[tr],
        train_y=y[tr],
        test_x=x[te],
        test_y=y[te],
        num_classes=10,
        metric="top1",
        sources=("sklearn.datasets.load_digits",),
    )
