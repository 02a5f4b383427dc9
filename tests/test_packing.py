import numpy as np
import torch

from nanorec.data import Sequences
from nanorec.core.packing import IGNORE, attention_mask, left_aligned, pack


def seqs(*rows):
    return Sequences.from_lists([list(r) for r in rows])


def test_pack_lays_users_end_to_end_with_restarting_positions():
    s = seqs([1, 2, 3], [4, 5], [6, 7, 8, 9])
    p = pack(s, block_size=5)  # no shuffle: users in order
    # user 0: tokens 1 2 -> targets 2 3 ; user 1: token 4 -> 5 ; user 2 (3 tokens) does not fit: next row
    assert p.tokens.tolist() == [[1, 2, 4, 0, 0], [6, 7, 8, 0, 0]]
    assert p.targets.tolist() == [[2, 3, 5, IGNORE, IGNORE], [7, 8, 9, IGNORE, IGNORE]]
    assert p.seq_ids.tolist() == [[0, 0, 1, -1, -1], [0, 0, 0, -1, -1]]
    assert p.pos_ids.tolist() == [[0, 1, 0, 0, 0], [0, 1, 2, 0, 0]]
    assert p.efficiency == 6 / 10
    assert pack(s, block_size=6).tokens.tolist() == [[1, 2, 4, 6, 7, 8]]  # exactly fills one row


def test_long_history_keeps_most_recent_items():
    p = pack(seqs(range(1, 11)), block_size=4)  # 10 items -> keep the last 5: tokens 6..9, targets 7..10
    assert p.tokens.tolist() == [[6, 7, 8, 9]]
    assert p.targets.tolist() == [[7, 8, 9, 10]]
    assert p.pos_ids.tolist() == [[0, 1, 2, 3]]


def test_shuffled_packing_keeps_every_target_once():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(1, 50, size=rng.integers(1, 9))) for _ in range(200)]
    s = seqs(*rows)
    p = pack(s, block_size=16, rng=np.random.default_rng(1))
    expected = sorted(t for r in rows for t in r[1:])
    got = sorted(p.targets[p.targets != IGNORE].tolist())
    assert got == expected
    assert p.efficiency > 0.8  # short histories pack densely


def test_single_item_users_are_left_out():
    p = pack(seqs([1], [2, 3]), block_size=4)
    assert p.tokens.tolist() == [[2, 0, 0, 0]]


def test_mask_is_causal_and_block_diagonal():
    seq = torch.tensor([[0, 0, 1, 1, 1, -1]])
    m = attention_mask(seq)[0, 0]
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(m, expected)


def test_left_aligned_inference_rows():
    tokens, seq_ids, pos_ids, last = left_aligned(seqs([5, 6, 7], [8], list(range(1, 8))), block_size=4)
    assert tokens.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [4, 5, 6, 7]]
    assert seq_ids.tolist() == [[0, 0, 0, -1], [0, -1, -1, -1], [0, 0, 0, 0]]
    assert pos_ids.tolist() == [[0, 1, 2, 0], [0, 0, 0, 0], [0, 1, 2, 3]]
    assert last.tolist() == [2, 0, 3]
