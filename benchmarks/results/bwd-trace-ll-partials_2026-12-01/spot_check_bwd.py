"""The closing note's spot check of the backward: random packed batches and
grid partitions (J a multiple of S), flags or LL words, 4 fiber orders each,
against the emulator; it printed "runs 100 bad 0" at 423d40e. Run from the
repository root after the build:

    PYTHONPATH=. python benchmarks/results/bwd-trace-ll-partials_2026-12-01/spot_check_bwd.py

tests/test_persistent_simt_random.py runs a smaller draw in the suite.
"""
import os, sys, random, torch
sys.path.insert(0, "tests")
import rnnfuse.ops  # noqa
from test_persistent_emulator import make_inputs
from test_persistent_emulator_bwd import spec_bwd, with_grads, emulate_bwd
from test_persistent_simt import simt_bwd, simt
from test_persistent_emulator import emulate
rng = random.Random(1)
BF16 = torch.bfloat16
bad = 0; runs = 0
for trial in range(40):
    cell = rng.choice(["LSTM", "GRU"])
    H = rng.choice([8, 10, 16, 24, 34])
    B = rng.randint(2, 12); T = rng.randint(2, 6)
    sizes = sorted([rng.randint(1, B) for _ in range(T)], reverse=True); sizes[0] = B
    S = rng.choice([1, 2, 4]); J = rng.choice([x for x in (4, 8, 12, 16) if x % S == 0])
    R = rng.choice([1, 2]); hb = rng.choice([8, 16, 32])
    ex = rng.choice(["flags", "ll"])
    os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = ex
    reverse = rng.choice([False, True])
    a = with_grads(make_inputs(cell, BF16, H, B, T, False, seed=trial), cell, BF16)
    a["bs"] = torch.tensor(sizes); n = sum(sizes)
    a["x"], a["gy"] = a["x"][:n], a["gy"][:n]
    _, saved = spec_bwd(cell, a, reverse)
    try:
        emu = emulate_bwd(cell, a, saved, reverse, J, R, hb, 2, seed=0, S=S)
    except RuntimeError as e:
        continue
    for seed in range(4):
        runs += 1
        try:
            got = simt_bwd(cell, a, saved, reverse, J, R, hb, 2, seed=seed, S=S)
        except RuntimeError as e:
            print("ERR", cell, H, B, sizes, J, S, R, hb, ex, reverse, str(e)[:100]); bad += 1; continue
        if not all(torch.equal(x, y) for x, y in zip(emu, got)):
            print("DIFF", cell, H, B, sizes, J, S, R, hb, ex, reverse, seed); bad += 1
print("runs", runs, "bad", bad)
