"""Is this process's CUDA context still usable? After a kernel traps or
faults, every later CUDA call in the process fails with the same (sticky)
error, so the GPU check's runners (pytest_resume.py, persist_check.py) ask
after each test or measurement and go on in a fresh process when it is not."""
from __future__ import annotations

import sys


def cuda_context_error() -> str | None:
    """None if this process's CUDA context works (or CUDA was never used in
    it); else the error a device synchronize raises."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - any failure here means the context is gone
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    return None
