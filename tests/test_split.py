"""The one validation split (dlstructured.data.split): 0.1.0's rows, and the hash mode."""

import numpy as np
import pandas as pd
import pytest

from dlstructured import prepare, split_frame
from dlstructured.data.split import hash_fractions, split_positions
from dlstructured.training.loop import _split_rows


def _frame(rows=40):
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "x": rng.normal(size=rows), "c": rng.choice(list("abcde"), rows),
        "g": rng.integers(0, 8, rows), "y": rng.integers(0, 2, rows),
        "r": rng.normal(size=rows),
    })


# Rows written down from 0.1.0's code (before the split had one home), for _frame().
PREPARE_ROWS_0_1_0 = {
    ("y", "random", 7, 0.25, None): (
        [17, 37, 34, 18, 32, 1, 22, 2, 9, 36, 29, 21, 13, 27, 5, 15, 20, 24, 11, 0, 12, 30, 16,
         39, 6, 7, 31, 26, 10, 33],
        [3, 4, 8, 14, 19, 23, 25, 28, 35, 38],
    ),
    ("y", "stratified", 7, 0.3, None): (
        [2, 20, 34, 15, 29, 17, 26, 24, 27, 0, 4, 10, 19, 7, 11, 36, 6, 37, 35, 8, 21, 39, 12,
         25, 31, 14, 23, 28],
        [1, 3, 5, 9, 13, 16, 18, 22, 30, 32, 33, 38],
    ),
    ("r", "stratified", 0, 0.3, None): (
        [9, 27, 5, 2, 3, 28, 21, 16, 30, 1, 29, 26, 13, 36, 33, 35, 8, 19, 7, 23, 37, 12, 39, 38,
         10, 18, 22, 25, 0, 34],
        [4, 6, 11, 14, 15, 17, 20, 24, 31, 32],
    ),
    ("y", "grouped", 0, 0.3, "g"): (
        [3, 16, 36, 30, 25, 6, 1, 20, 38, 15, 23, 8, 26, 14, 5, 0, 12, 21, 27, 17, 28, 18, 11, 7,
         22, 34, 19, 31, 37],
        [2, 4, 9, 10, 13, 24, 29, 32, 33, 35, 39],
    ),
}

# train(valid_fraction=...)'s rows in 0.1.0: (rows, fraction, seed) -> (train, valid).
TRAIN_ROWS_0_1_0 = {
    (23, 0.2, 5): ([0, 1, 2, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 16, 17, 19, 20, 21],
                   [3, 9, 11, 18, 22]),
    (10, 0.3, 0): ([0, 1, 3, 5, 7, 8, 9], [2, 4, 6]),
    (2, 0.5, 1): ([1], [0]),
}


@pytest.mark.parametrize("case", sorted(PREPARE_ROWS_0_1_0, key=str))
def test_prepare_gives_0_1_0_rows(case):
    target, split, seed, fraction, group_by = case
    data = prepare(_frame(), target, split=split, seed=seed, valid_fraction=fraction,
                   group_by=group_by)
    train, valid = PREPARE_ROWS_0_1_0[case]
    assert data.train_index.tolist() == train
    assert data.valid_index.tolist() == valid


def test_random_split_is_the_course_sample():
    frame = _frame(57)
    train, valid = split_frame(frame, 0.3, seed=11)
    expected = frame.sample(frac=0.7, random_state=11)
    assert train.index.tolist() == expected.index.tolist()
    assert valid.index.tolist() == sorted(set(frame.index) - set(expected.index))


@pytest.mark.parametrize("case", sorted(TRAIN_ROWS_0_1_0))
def test_train_split_gives_0_1_0_rows(case):
    rows, fraction, seed = case
    expected = TRAIN_ROWS_0_1_0[case]
    for train, valid in (_split_rows(rows, fraction, seed),
                         split_positions(rows, fraction, method="permutation", seed=seed)):
        assert (train.tolist(), valid.tolist()) == expected


def test_train_split_keeps_its_error_for_one_row():
    with pytest.raises(ValueError, match="at least 2 rows"):
        _split_rows(1, 0.3, 0)


def test_hash_split_is_the_same_whatever_the_batches():
    whole_train, whole_valid = split_positions(1000, 0.2, method="hash", seed=4)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=12, replace=False))
    valid = []
    for start, stop in zip([0, *cuts], [*cuts, 1000], strict=True):
        _, part = split_positions(stop - start, 0.2, method="hash", seed=4, start=int(start))
        valid.extend((part + start).tolist())
    assert valid == whole_valid.tolist()
    assert sorted([*whole_train.tolist(), *valid]) == list(range(1000))


def test_hash_split_is_close_to_the_fraction_and_follows_the_seed():
    size, fraction = 20000, 0.3
    shares = []
    for seed in range(3):
        _, valid = split_positions(size, fraction, method="hash", seed=seed)
        shares.append(len(valid) / size)
    spread = 4 * np.sqrt(fraction * (1 - fraction) / size)
    assert all(abs(share - fraction) < spread for share in shares), shares
    first = split_positions(size, fraction, method="hash", seed=0)[1]
    other = split_positions(size, fraction, method="hash", seed=1)[1]
    overlap = len(np.intersect1d(first, other)) / len(first)
    assert abs(overlap - fraction) < 0.05  # another seed: an unrelated choice
    values = hash_fractions(np.arange(size), 0)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 0.01


def test_prepare_and_split_frame_take_the_hash_split():
    frame = _frame(200)
    _, expected = split_positions(200, 0.25, method="hash", seed=2)
    data = prepare(frame, "y", split="hash", valid_fraction=0.25, seed=2)
    assert data.valid_index.tolist() == expected.tolist()
    assert data.train_index.tolist() == sorted(set(range(200)) - set(expected))
    train, valid = split_frame(frame, 0.25, split="hash", seed=2)
    assert valid.index.tolist() == expected.tolist()
    assert len(train) + len(valid) == 200


def test_split_positions_checks_its_arguments():
    with pytest.raises(ValueError, match="method"):
        split_positions(10, 0.3, method="shuffle")
    with pytest.raises(ValueError, match="labels"):
        split_positions(10, 0.3, method="stratified")
    with pytest.raises(ValueError, match="valid_fraction"):
        split_positions(10, 1.0)
    with pytest.raises(TypeError, match="seed"):
        split_positions(10, 0.3, seed="1")
