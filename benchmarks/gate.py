"""Correctness gate: a point is timed only after the candidate matches torch.nn.

Both modules run the point's mode on the same fresh random inputs (a seed
different from the timing inputs). We compare the output sequence and the
final states, and in training mode the input gradient and every parameter
gradient that both modules have under the same name.

Error measure: ``max|cand - ref| / max|ref|`` in float64, i.e. the worst
element relative to the tensor's magnitude. Recurrent outputs are bounded
(|h| < 1) and a wrong gate order or a missed timestep shows up as an O(1)
error, far above any tolerance below, while a relative-per-element measure
would blow up on the many near-zero entries.

Tolerances: both sides round at their dtype, in a different order, once per
step; over hundreds of steps the gap grows to a few units in the last place
of the output dtype, not more (a trained or random LSTM/GRU is contractive).
fp32: 1e-4 (eps 1.2e-7); tf32: 1e-2 (10-bit mantissa in the GEMMs);
fp16: 1e-2 (eps 9.8e-4); bf16: 5e-2 (eps 7.8e-3). Gradients: 3x, as in the
tests' rule (CONVENTIONS.md section 5), because the backward accumulates
over all timesteps. A cell chain is the same recurrence run call by call and
gets the same tolerances.

If torch.nn itself raises on the point (a dtype or shape it does not run on
this device), the gate raises BaselineUnsupported: the point is recorded as
"torch.nn unsupported", not as an error of the candidate.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from . import workload

TOLERANCE = {"fp32": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "bf16": 5e-2}
GRAD_FACTOR = 3.0


class BaselineUnsupported(Exception):
    """torch.nn raised on this point: there is nothing to compare against."""


@dataclasses.dataclass
class GateResult:
    ok: bool
    errors: dict  # name -> relative error (inf for non-finite or a shape mismatch)
    tolerance: dict  # {"forward": ..., "gradient": ...}
    reason: str = ""

    def as_dict(self) -> dict:
        # JSON has no inf: write the string so the value survives round trips.
        errs = {k: (v if math.isfinite(v) else "inf") for k, v in self.errors.items()}
        return {"ok": self.ok, "errors": errs, "tolerance": self.tolerance, "reason": self.reason}


def relative_error(cand: torch.Tensor, ref: torch.Tensor) -> float:
    """max|cand - ref| / max|ref|; inf if shapes differ or cand is not finite."""
    if cand is None or tuple(cand.shape) != tuple(ref.shape):
        return math.inf
    c, r = cand.detach().double(), ref.detach().double()
    if c.numel() == 0:
        return 0.0
    if not torch.isfinite(c).all():
        return math.inf
    scale = r.abs().max().item()
    diff = (c - r).abs().max().item()
    return diff / scale if scale > 0 else diff


def _run(module, point, inputs):
    """Outputs (and gradients) of one step, keyed by name."""
    x, hx = inputs.xs[0], inputs.hx
    if point.mode == "inference":
        with torch.inference_mode():
            y, state = workload.run_sequence(module, point, x, hx)
        grads = {}
    else:
        for p in module.parameters():
            p.grad = None
        x.grad = None
        y, state = workload.run_sequence(module, point, x, hx)
        if point.is_cell:
            torch.autograd.backward(y, list(inputs.grad_out.unbind(0)))
        else:
            y.backward(inputs.grad_out)
        grads = {"grad_input": x.grad.detach().clone()}
        # None stays: a parameter the candidate has but left without a gradient is a bug.
        grads.update({f"grad_{n}": p.grad for n, p in module.named_parameters()})
    if isinstance(y, list):  # a cell chain's hidden states
        y = torch.stack([t.detach() for t in y])
    out = {"output": y.detach()}
    if isinstance(state, tuple):
        out["h_n"], out["c_n"] = state[0].detach(), state[1].detach()
    else:
        out["h_n"] = state.detach()
    return out, grads


def check(point, baseline, candidate, device: torch.device, seed: int = 1234) -> GateResult:
    """Compare ``candidate`` against ``baseline`` at this point's dtype and mode."""
    tol = TOLERANCE[point.dtype]
    tolerance = {"forward": tol, "gradient": tol * GRAD_FACTOR}
    # Identical copies of the inputs for each side: gradients land on x.
    ref_in = workload.make_inputs(point, device, seed)
    cand_in = workload.make_inputs(point, device, seed)
    try:
        ref_out, ref_grads = _run(baseline, point, ref_in)
    except Exception as e:  # noqa: BLE001 - whatever torch.nn raises, it is torch.nn's
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BaselineUnsupported(f"{type(e).__name__}: {msg}") from e
    for name, t in {**ref_out, **ref_grads}.items():
        if t is not None and not torch.isfinite(t).all():
            return GateResult(False, {}, tolerance, f"torch.nn's {name} is not finite")
    cand_out, cand_grads = _run(candidate, point, cand_in)

    errors, failed = {}, []
    for name, ref in ref_out.items():
        errors[name] = relative_error(cand_out.get(name), ref)
        if not errors[name] <= tolerance["forward"]:
            failed.append(name)
    for name, ref in ref_grads.items():
        if ref is None or (name != "grad_input" and name not in cand_grads):
            # A parameter the candidate stores under another name: load_state_dict
            # already matched it; the input gradient is always compared.
            continue
        errors[name] = relative_error(cand_grads.get(name), ref)
        if not errors[name] <= tolerance["gradient"]:
            failed.append(name)
    reason = ""
    if failed:
        worst = max(failed, key=lambda n: errors[n])
        reason = (f"{len(failed)} tensor(s) off; worst {worst}: error {errors[worst]:.3g} "
                  f"> tolerance {tolerance['gradient' if worst.startswith('grad_') else 'forward']:.3g}")
    return GateResult(not failed, errors, tolerance, reason)
