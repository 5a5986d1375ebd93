"""The per-step path's tile planner (csrc/step_plan.h), run on the CPU through
rnnfuse::step_tile_plan: the exact C++ each CUDA step launch calls.

Its model: a step costs waves * ceil(k / k_chunk) dependent L2 round trips
(waves: blocks over resident blocks on all SMs); the cheapest tile wins, ties
to the one with fewer blocks. The tables below are the forward LSTM tiles'
shapes (csrc/cuda/lstm_step.cuh) with plausible occupancies; on a GPU the
occupancy comes from the occupancy API.
"""
from __future__ import annotations

import math

import pytest
import torch

plan = torch.ops.rnnfuse.step_tile_plan

SMS = 132  # H100 / H200
# [rows, units, k_chunk, blocks_per_sm]: LstmFwdTiles' MmaSmall and MmaLarge in bf16.
SMALL = [16, 8, 64, 4]
LARGE = [64, 16, 32, 2]


def cost(tile, rows, units, k, directions, sms=SMS):
    blocks = math.ceil(units / tile[1]) * math.ceil(rows / tile[0]) * directions
    if tile[3] == 0:  # cannot be resident
        return math.inf, blocks
    return math.ceil(blocks / (sms * tile[3])) * (math.ceil(k / tile[2]) if k else 1), blocks


def pick(tiles, rows, units, k, directions=1, sms=SMS):
    choice = plan([v for t in tiles for v in t], rows, units, k, directions, sms)
    costs = [cost(t, rows, units, k, directions, sms) for t in tiles]
    print(f"rows {rows} units {units} k {k} dirs {directions}: (round trips, blocks) {costs} "
          f"-> tile {choice}")
    return choice


@pytest.mark.parametrize("hidden", [64, 256, 512, 768, 1024, 2048, 4096])
@pytest.mark.parametrize("rows", [1, 8, 16])
def test_small_batches_take_the_small_tile(rows, hidden):
    # Few rows: the 16-row tile needs no more waves and half the round trips.
    assert pick([SMALL, LARGE], rows, hidden, hidden) == 0


def test_batch_64_fills_the_machine_with_small_tiles():
    # H200, H=512, B=64 (committed run: 47-61 us a step on the 64-row tiles,
    # 32 blocks on 132 SMs). The 16-row tiles: 256 blocks, one wave, half the
    # round trips.
    assert pick([SMALL, LARGE], 64, 512, 512) == 0
    _, blocks = cost(LARGE, 64, 512, 512, 1)
    assert blocks < SMS


def test_large_batch_takes_the_large_tile_once_small_tiles_need_more_waves():
    # B=256, H=1024: 16-row tiles need 2048 blocks (4 waves at 4 per SM),
    # 64-row tiles 256 (one wave at 2 per SM) with twice the chunks.
    assert pick([SMALL, LARGE], 256, 1024, 1024) == 1


def test_two_directions_count_twice():
    # One direction fits the 16-row tiles in one wave; both directions in one
    # launch need two, where the 64-row tiles still need one.
    rows, units, k = 128, 512, 512
    small_1, _ = cost(SMALL, rows, units, k, 1)
    small_2, _ = cost(SMALL, rows, units, k, 2)
    large_2, _ = cost(LARGE, rows, units, k, 2)
    assert small_2 == 2 * small_1 and large_2 == small_2
    assert pick([SMALL, LARGE], rows, units, k, 1) == 0
    # a tie at two directions goes to the tile with fewer blocks
    assert pick([SMALL, LARGE], rows, units, k, 2) == 1


def test_ties_go_to_fewer_blocks_in_either_order():
    a, b = [16, 8, 32, 4], [32, 8, 32, 4]  # same chunks, one wave each at these sizes
    assert pick([a, b], 32, 64, 256) == 1
    assert pick([b, a], 32, 64, 256) == 0


def test_no_gemm_counts_waves_only():
    # The LSTM backward with a projection runs its kernel without a GEMM (k = 0).
    assert pick([SMALL, LARGE], 4096, 4096, 0) == 1
    # one wave either way: a tie, to the tile with fewer blocks
    assert pick([SMALL, LARGE], 8, 256, 0) == 1


def test_a_tile_that_cannot_be_resident_is_never_picked():
    assert pick([[16, 8, 64, 0], LARGE], 8, 512, 512) == 1
    with pytest.raises(RuntimeError, match="no step kernel tile can be resident"):
        plan([16, 8, 64, 0, 64, 16, 32, 0], 8, 512, 512, 1, SMS)


@pytest.mark.parametrize("args,match", [
    (([16, 8, 64], 8, 512, 512, 1, SMS), "4 integers per tile"),
    (([], 8, 512, 512, 1, SMS), "4 integers per tile"),
    ((SMALL, 0, 512, 512, 1, SMS), "bad shape"),
    ((SMALL, 8, 512, 512, 3, SMS), "bad shape"),
    ((SMALL, 8, 512, 512, 1, 0), "bad shape"),
    (([0, 8, 64, 4], 8, 512, 512, 1, SMS), "bad tile 0"),
])
def test_bad_arguments_raise(args, match):
    with pytest.raises(RuntimeError, match=match):
        plan(*args)


def test_matches_the_model_everywhere():
    # The C++ against the model it documents, over a grid of shapes and both
    # direction counts, with a third tile to exercise more than two choices.
    mid = [32, 8, 64, 3]
    tiles = [SMALL, mid, LARGE]
    for rows in (1, 7, 16, 33, 64, 100, 256, 1000):
        for units in (24, 256, 512, 1000, 2048):
            for k in (0, units, 3 * units):
                for dirs in (1, 2):
                    got = pick(tiles, rows, units, k, dirs)
                    keyed = [(cost(t, rows, units, k, dirs), i) for i, t in enumerate(tiles)]
                    want = min(keyed)[1]
                    assert got == want, (rows, units, k, dirs)
