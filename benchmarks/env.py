"""What a result depends on besides the code: card, driver, library versions, flags.

A number without its environment can't be compared with the next run, so
every results.json carries this record.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    """stdout of a command, or None if it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_commit() -> dict:
    """HEAD and whether tracked files differ from it.

    A copy of the tree without .git (the device machine gets one) has no
    history: RNNFUSE_COMMIT, if set, names the commit instead.
    """
    commit = _run(["git", "rev-parse", "HEAD"])
    if commit is None:
        return {"commit": os.environ.get("RNNFUSE_COMMIT"), "dirty": None,
                "source": "RNNFUSE_COMMIT" if os.environ.get("RNNFUSE_COMMIT") else None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(status) if status is not None else None,
            "source": "git"}


def driver_version() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": p.name, "sm_count": p.multi_processor_count,
                "compute_capability": [p.major, p.minor],
                "memory_bytes": p.total_memory,
                "l2_bytes": getattr(p, "L2_cache_size", None)}
    return {"type": "cpu", "name": cpu_model(), "threads": torch.get_num_threads(),
            "logical_cpus": os.cpu_count()}


def slug(text: str, limit: int = 48) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (for folder names)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "unknown"


def card_slug(info: dict) -> str:
    return slug(info["name"]) if info["type"] == "cuda" else "cpu-" + slug(info["name"], 40)


def rnnfuse_info() -> dict:
    """Where rnnfuse was imported from and whether its compiled ops loaded."""
    try:
        import rnnfuse
    except Exception as e:  # noqa: BLE001 - record any import failure
        return {"importable": False, "error": f"{type(e).__name__}: {e}"}
    info = {"importable": True, "path": str(Path(rnnfuse.__file__).parent),
            "version": getattr(rnnfuse, "__version__", None)}
    ext = sys.modules.get("rnnfuse._C")
    info["extension"] = getattr(ext, "__file__", None) if ext else None
    return info


def collect(device: torch.device, candidate: str) -> dict:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device_info(device),
        "driver": driver_version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        # PyTorch's defaults at start-up; each point records the flags it ran under.
        "tf32_defaults": {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                          "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32},
        "cudnn_enabled": torch.backends.cudnn.enabled,
        # A busy host (other builds, other jobs) makes CPU timings noisy: record it.
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git": git_commit(),
        "candidate": candidate,
        "rnnfuse": rnnfuse_info() if candidate == "rnnfuse" else None,
    }
