"""torch.nn's autocast policy for LSTM, GRU and their cells, per device.

What autocast does to torch.nn's recurrent modules depends on the device and
on which ATen path runs:

* CUDA, LSTM/GRU on cuDNN: ``_cudnn_rnn``'s autocast wrapper
  (aten/src/ATen/cudnn/AutocastRNN.cpp) casts input, states and weights to
  float16, whatever dtype autocast was given.
* CUDA, cells: ``lstm_cell`` / ``gru_cell`` are on autocast's lower-precision
  list: everything in the autocast dtype.
* CPU, LSTM that oneDNN runs (not packed, no projection, oneDNN enabled):
  ``mkldnn_rnn_layer`` is on the CPU lower-precision list: everything in the
  autocast dtype.
* Everywhere else (GRU and the cells on the CPU, packed or projected LSTM on
  the CPU, CUDA with cuDNN disabled) ATen's native recurrence runs: only its
  matmuls are autocast, the states keep their dtype, so outputs come back in
  the module's dtype, except that a projection's output (y and h_n) comes
  back in the autocast dtype.

Autocast never casts float64 tensors. :func:`plan` gives the policy for one
call; the driver applies it around the fused ops (which autocast does not
touch).
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Plan:
    """``cast_to``: the dtype every eligible tensor is cast to before
    computing, or None for the native policy (compute in the module's dtype,
    the input projection under autocast). ``proj_out``: the dtype y and h_n
    leave in when an LSTM projects under the native policy."""
    device_type: str
    cast_to: torch.dtype | None
    proj_out: torch.dtype | None = None

    def dtype_of(self, t: torch.Tensor) -> torch.dtype:
        """The dtype ``t`` computes in under this plan."""
        return self.cast_to if self.cast_to is not None and eligible(t) else t.dtype


def eligible(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dtype != torch.float64


def _cudnn_on() -> bool:
    return torch.backends.cudnn.enabled and torch.backends.cudnn.is_available()


def _onednn_on() -> bool:
    return torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()


# One call answering "is autocast on for any device" (a cell call's common
# case, cheaper than asking for the device); absent in some torch versions.
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)


def plan(x: torch.Tensor, *, lstm: bool, cell: bool, packed: bool = False,
         proj: bool = False) -> Plan | None:
    """torch.nn's policy for this call, or None when autocast is off."""
    if _any_autocast is not None and not _any_autocast():
        return None
    device_type = x.device.type
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    lower = torch.get_autocast_dtype(device_type)
    if device_type == "cuda":
        if cell:
            return Plan(device_type, lower)
        if _cudnn_on():
            return Plan(device_type, torch.float16)
    elif lstm and not cell and not packed and not proj and _onednn_on():
        return Plan(device_type, lower)
    return Plan(device_type, None, proj_out=lower if proj else None)


def cast(p: Plan | None, *tensors):
    """The tensors as they compute under ``p`` (None stays None)."""
    if p is None or p.cast_to is None:
        return tensors
    return tuple(None if t is None else t.to(p.dtype_of(t)) for t in tensors)


def consistent(p: Plan | None, x: torch.Tensor, others) -> bool:
    """Whether ``x`` and the states/weights ``others`` compute in one dtype
    under ``p`` (else torch.nn decides: it raises or mixes on its own terms)."""
    if p is None:
        return all(t.dtype == x.dtype for t in others)
    if not x.is_floating_point():
        return False
    dtypes = {p.dtype_of(t) for t in others}
    if len(dtypes) > 1:
        return False
    if p.cast_to is not None:
        return dtypes <= {p.dtype_of(x)}
    # Native policy: the input projection runs under autocast, which casts x
    # and the weights alike when both are eligible.
    (dtype,) = dtypes or {x.dtype}
    return x.dtype == dtype or (eligible(x) and dtype != torch.float64)
