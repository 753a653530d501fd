import numpy as np

from tasks.distill.data import TokenBlocks


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
        validation=np.array([False, False, False, True, True, True]),
        source=np.zeros(6, np.int64),
        local=np.arange(6),
    )
    assert blocks.split(False).tolist() == [2]
    assert blocks.split(True).tolist() == [3, 5]
