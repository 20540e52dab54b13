"""scikit-learn's handwritten digits as 8x8 images, split into training and test sets."""

from __future__ import annotations

import torch

from minidl import DataError, Dataset

#: load_digits() has 1,797 images; by default a fifth of them (360) are the test set.
DEFAULT_TEST = 360


def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits dataset needs scikit-learn, which is not installed: "
            "pip install minidl-vision[digits]"
        ) from None
    bunch = load_digits()
    # Pixel values are integers 0..16.
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return x, y


def digits(
    seed: int = 0, n_train: int | None = None, n_test: int | None = None
) -> tuple[Dataset, Dataset]:
    """``(train, test)``: images ``(N, 1, 8, 8)`` float32 in [0, 1] and labels ``(N,)``
    int64 in 0..9, split at random (seeded: same seed, same split).

    By default 1,437 training and 360 test images. Give ``n_train`` or ``n_test`` to
    change one (the other takes the rest), or both to use fewer images. The test set is
    taken from one end of the seeded order and the training set from the other, so a
    smaller ``n_train`` keeps the same test set.
    """
    x, y = _load_digits()
    total = len(y)
    if n_train is None and n_test is None:
        n_test = DEFAULT_TEST
    if n_test is None:
        n_test = total - (n_train or 0)
    if n_train is None:
        n_train = total - n_test
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"digits: {label} must be a positive integer, got {n!r}")
    if n_train + n_test > total:
        raise DataError(
            f"digits: n_train ({n_train}) + n_test ({n_test}) is more than the {total} images"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    train, test = order[:n_train], order[total - n_test :]
    return Dataset(x[train], y[train]), Dataset(x[test], y[test])
