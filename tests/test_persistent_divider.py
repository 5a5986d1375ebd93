"""divider.h's multiply-high divider, through rnnfuse::persistent_quotients
(the same C++ the kernels and the emulator call), against Python's //.
The cluster backward divides by J through it: the owner of a unit, a
reduction item's row and a k index's gate (cluster_bwd_layout.h). J is at
most H (4096 or less wherever W fits on chip) and the numerators are int
indices, so: every divisor to 4096 with every numerator below 2^16, each
divisor's largest numerators, and the 32-bit extremes."""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401  (loads rnnfuse._C)

OPS = torch.ops.rnnfuse
INT_MAX = 2**31 - 1


def check(divisor: int, n: torch.Tensor) -> int:
    """Mismatches of the divider against // for one divisor."""
    got = OPS.persistent_quotients(n, divisor)
    want = torch.div(n, divisor, rounding_mode="floor")
    bad = (got != want).nonzero()
    if len(bad):
        i = bad[0].item()
        print(f"  divisor {divisor}: {n[i].item()} // {divisor} = {want[i].item()}, "
              f"divider says {got[i].item()}")
    return len(bad)


def test_every_divisor_to_4096_every_small_numerator():
    n = torch.arange(1 << 16, dtype=torch.long)
    bad = {d: check(d, n) for d in range(1, 4097)}
    wrong = {d: k for d, k in bad.items() if k}
    print(f"  divisors 1..4096 x numerators 0..65535: {len(wrong)} divisors with mismatches")
    assert not wrong, f"mismatches per divisor: {dict(list(wrong.items())[:8])}"


def test_largest_numerators_and_extreme_divisors():
    top = torch.arange(INT_MAX - 4095, INT_MAX + 1, dtype=torch.long)
    wrong = [d for d in range(1, 4097) if check(d, top)]
    gen = torch.Generator().manual_seed(0)
    spread = torch.cat([torch.randint(0, INT_MAX, (4096,), generator=gen, dtype=torch.long),
                        torch.tensor([0, 1, 2**30, 2**31 - 2, INT_MAX])])
    extreme = sorted({2**k + s for k in range(1, 31) for s in (-1, 0, 1)} | {3, 5, 7, INT_MAX})
    extreme = [d for d in extreme if 1 <= d <= INT_MAX]
    randoms = torch.randint(1, INT_MAX, (256,), generator=gen).tolist()
    for d in extreme + randoms:
        if check(d, torch.cat([spread, torch.tensor([d - 1, d, d + 1]).clamp(0, INT_MAX)])):
            wrong.append(d)
    print(f"  {len(extreme) + len(randoms) + 4096} divisors against the numerators near 2^31 "
          f"and a spread: {len(wrong)} with mismatches")
    assert not wrong, f"divisors with mismatches: {wrong[:8]}"


@pytest.mark.parametrize("divisor, numerators, message", [
    (0, [1], "outside \\[1, 2\\^31\\)"),
    (2**31, [1], "outside \\[1, 2\\^31\\)"),
    (7, [-1], "numerator -1 is outside"),
    (7, [2**31], "outside \\[0, 2\\^31\\)"),
])
def test_out_of_range_is_an_error(divisor, numerators, message):
    with pytest.raises(RuntimeError, match=message):
        OPS.persistent_quotients(torch.tensor(numerators, dtype=torch.long), divisor)
