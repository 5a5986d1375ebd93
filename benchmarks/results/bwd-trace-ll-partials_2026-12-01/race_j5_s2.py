"""The race of NOTES section 4: the grid backward kernel on the fibers with a
K split whose parts cannot share units evenly (J=5, S=2, H=10, packed batch
4, 2, 2, 1), 40 fiber orders against the emulator. Run from the repository
root after the build, at a commit before 329a0f7 (e.g. a7a674a; it was run
on a working tree between a7a674a and 423d40e whose flag kernel was
a7a674a's): there it printed 4 (LSTM) and 6 (GRU) of 40 differing. From 329a0f7 on the partition
is refused, and this prints the refusal.

    PYTHONPATH=. python benchmarks/results/bwd-trace-ll-partials_2026-12-01/race_j5_s2.py
"""
import sys, torch
sys.path.insert(0, "tests")
import rnnfuse.ops  # noqa
from test_persistent_emulator import make_inputs
from test_persistent_emulator_bwd import spec_bwd, with_grads, emulate_bwd
from test_persistent_simt import simt_bwd
BF16 = torch.bfloat16
for cell in ("LSTM", "GRU"):
    a = with_grads(make_inputs(cell, BF16, 10, 4, 4, True, seed=3), cell, BF16)
    a["bs"] = torch.tensor([4, 2, 2, 1])
    n = int(a["bs"].sum())
    a["x"], a["gy"] = a["x"][:n], a["gy"][:n]
    _, saved = spec_bwd(cell, a, False)
    try:
        emu = emulate_bwd(cell, a, saved, False, 5, 1, 32, 2, seed=0, S=2)
    except RuntimeError as e:
        print(cell, "J=5 S=2 refused:", e)
        continue
    bad = 0
    for seed in range(40):
        got = simt_bwd(cell, a, saved, False, 5, 1, 32, 2, seed=seed, S=2)
        if not all(torch.equal(e, g) for e, g in zip(emu, got)):
            bad += 1
    print(cell, "J=5 S=2 packed: seeds differing from the emulator:", bad, "of 40")
