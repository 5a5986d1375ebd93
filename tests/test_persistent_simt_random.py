"""Random grid-tier configurations on the fibers (simt.h), against the
emulator bit for bit: the structured tests (test_persistent_simt*.py) pick
their partitions and batches by hand; these draw them (a fixed seed, so a
failure reproduces): cell, H, a packed batch's sizes, direction, units per
CTA, replicas, h buffer rows, the K split (backward) and the exchange (flags
or LL words), each run under two fiber orders. (A run like these, by
hand, found that a K split needs J a multiple of S: layout.h
bwd_partition_error.)
"""
from __future__ import annotations

import random

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import emulate, make_inputs
from test_persistent_emulator_bwd import emulate_bwd, spec_bwd, with_grads
from test_persistent_simt import assert_same_bits, simt, simt_bwd

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the kernels' host execution is built with CUDA")

BF16 = torch.bfloat16


def draw(rng: random.Random, trial: int, backward: bool) -> dict:
    B, T = rng.randint(2, 12), rng.randint(2, 6)
    sizes = sorted((rng.randint(1, B) for _ in range(T)), reverse=True)
    sizes[0] = B
    S = rng.choice([1, 2, 4]) if backward else 1
    return {"cell": rng.choice(["LSTM", "GRU"]), "H": rng.choice([8, 10, 16, 24, 34]), "B": B,
            "T": T, "sizes": sizes, "reverse": rng.choice([False, True]), "S": S,
            "J": rng.choice([j for j in (2, 4, 6, 8, 12, 16) if j % S == 0]),
            "R": rng.choice([1, 2]), "hb": rng.choice([8, 16, 32]),
            "exchange": rng.choice(["flags", "ll"]), "seed": trial}


def packed_inputs(c: dict, backward: bool) -> dict:
    a = make_inputs(c["cell"], BF16, c["H"], c["B"], c["T"], False, seed=c["seed"])
    if backward:
        a = with_grads(a, c["cell"], BF16)
    a["bs"] = torch.tensor(c["sizes"])
    n = sum(c["sizes"])
    a["x"] = a["x"][:n]
    if backward:
        a["gy"] = a["gy"][:n]
    return a


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_random_configurations_equal_the_emulator(backward, monkeypatch):
    rng = random.Random(2 if not backward else 1)
    ran = 0
    for trial in range(24):
        c = draw(rng, trial, backward)
        monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", c["exchange"])
        a = packed_inputs(c, backward)
        cell, rev, J, R, hb, S = c["cell"], c["reverse"], c["J"], c["R"], c["hb"], c["S"]
        try:
            if backward:
                _, saved = spec_bwd(cell, a, rev)
                emu = emulate_bwd(cell, a, saved, rev, J, R, hb, 2, seed=0, S=S)
            else:
                emu = emulate(cell, a, rev, J, R, hb, 2, seed=0)
        except RuntimeError as e:  # a partition the kernels refuse too (too many CTAs, ...)
            print(f"refused {c}: {e}")
            continue
        for seed in (1, 2):
            got = (simt_bwd(cell, a, saved, rev, J, R, hb, 2, seed=seed, S=S) if backward
                   else simt(cell, a, rev, J, R, hb, 2, seed=seed))
            assert_same_bits(emu, got, f"{c} fiber seed {seed}")
        ran += 1
    print(f"{ran} of 24 drawn configurations ran")
    assert ran >= 10
