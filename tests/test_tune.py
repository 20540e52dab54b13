"""Tuning: choices made on a validation split of the training points, never the test set."""

import pytest

import minidl


def test_validation_split_is_carved_from_training_points() -> None:
    config = minidl.TrainConfig(n_train=100, n_test=50, seed=4)
    train, test = minidl.experiment.load_data(config)
    fit_part, val = minidl.experiment.load_data(config.replace(validation=0.2))
    assert (len(fit_part), len(val)) == (80, 20)
    rows = {tuple(r) for r in train.x.tolist()}
    assert all(tuple(r) in rows for r in fit_part.x.tolist() + val.x.tolist())
    assert not {tuple(r) for r in fit_part.x.tolist()} & {tuple(r) for r in val.x.tolist()}
    assert not rows & {tuple(r) for r in test.x.tolist()}
    with pytest.raises(ValueError, match="validation must be a fraction"):
        minidl.experiment.load_data(config.replace(validation=1.5))
