import numpy as np
import pytest

from tasks.distill.data import TokenBlocks, split_codes


def test_split_leaves_out_blocks_without_a_target() -> None:
    mask = np.array(
        [
            [0, 0, 0, 0],  # all prompt: no target
            [1, 0, 0, 0],  # its only loss token is the first one: nothing predicts it
            [0, 0, 1, 1],
            [0, 1, 0, 0],
            [0, 0, 0, 0],
            [1, 1, 1, 1],
        ],
        np.uint8,
    )
    blocks = TokenBlocks(
        input_ids=np.zeros(mask.shape, np.int64),
        loss_mask=mask,
        split=np.array([0, 0, 0, 1, 2, 2], np.int8),  # train, selection, test
        source=np.zeros(6, np.int64),
        local=np.arange(6),
    )
    assert blocks.train().tolist() == [2]
    assert blocks.selection().tolist() == [3]
    assert blocks.test().tolist() == [5]


def test_split_codes_read_old_validation_blocks_as_alternating_selection_and_test() -> None:
    codes = split_codes(["train", "validation", "train", "validation", "validation", "test"])
    assert codes.tolist() == [0, 1, 0, 2, 1, 2]
    with pytest.raises(ValueError, match="unknown split"):
        split_codes(["train", "dev"])
