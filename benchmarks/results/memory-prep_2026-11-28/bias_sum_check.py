"""The GRU bias gradient's reduction (csrc/driver_gru.cpp, a523aca): a sum of
reduced-precision dhh rows in dhh's own dtype against the old fp32-result sum
rounded to that dtype, on the CPU:

  python benchmarks/results/memory-prep_2026-11-28/bias_sum_check.py

Prints both sums' error against float64 and whether they are bitwise equal.
"""
import torch

for dtype in (torch.bfloat16, torch.float16):
    gen = torch.Generator().manual_seed(0)
    dhh = torch.randn(25600, 1536, generator=gen, dtype=torch.float64).to(dtype)
    ref = dhh.double().sum(0)
    new = dhh.sum(0)
    old = dhh.sum(0, dtype=torch.float32).to(dtype)
    err = lambda t: ((t.double() - ref).abs().max() / ref.abs().max()).item()  # noqa: E731
    print(f"{dtype}: in its dtype {err(new):.3g}, fp32 then rounded {err(old):.3g}, "
          f"bitwise equal: {torch.equal(new, old)}")
