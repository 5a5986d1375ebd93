"""The closing note's spot check of the forward: random packed batches and
grid partitions, flags or LL words, 4 fiber orders each, against the
emulator; it printed "runs 160 bad 0" at 423d40e. Run from the repository
root after the build:

    PYTHONPATH=. python benchmarks/results/bwd-trace-ll-partials_2026-12-01/spot_check_fwd.py

tests/test_persistent_simt_random.py runs a smaller draw in the suite.
"""
import os, sys, random, torch
sys.path.insert(0, "tests")
import rnnfuse.ops  # noqa
from test_persistent_emulator import make_inputs, emulate
from test_persistent_simt import simt
rng = random.Random(2)
BF16 = torch.bfloat16
bad = runs = 0
for trial in range(40):
    cell = rng.choice(["LSTM", "GRU"])
    H = rng.choice([8, 10, 16, 24, 34]); B = rng.randint(2, 12); T = rng.randint(2, 6)
    sizes = sorted([rng.randint(1, B) for _ in range(T)], reverse=True); sizes[0] = B
    J = rng.choice([2, 4, 6, 8, 16]); R = rng.choice([1, 2]); hb = rng.choice([8, 16, 32])
    os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = rng.choice(["flags", "ll"])
    reverse = rng.choice([False, True])
    a = make_inputs(cell, BF16, H, B, T, False, seed=trial)
    a["bs"] = torch.tensor(sizes); a["x"] = a["x"][:sum(sizes)]
    try:
        emu = emulate(cell, a, reverse, J, R, hb, 2, seed=0)
    except RuntimeError:
        continue
    for seed in range(4):
        runs += 1
        try:
            got = simt(cell, a, reverse, J, R, hb, 2, seed=seed)
        except RuntimeError as e:
            print("ERR", cell, H, sizes, J, R, hb, reverse, str(e)[:120]); bad += 1; continue
        if not all(torch.equal(x, y) for x, y in zip(emu, got)):
            print("DIFF", cell, H, sizes, J, R, hb, reverse, seed); bad += 1
print("runs", runs, "bad", bad)
