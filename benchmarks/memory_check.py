"""Where a training step's peak memory goes, rnnfuse against torch.nn, for
gpu_check.sh (issue 8 item 6: peak training memory no higher than torch.nn's):

  python3 benchmarks/memory_check.py --json WORK/memory.json

For LSTM and GRU in bf16 and fp32 at T=100, B=256, I=H=512 (a quick-preset
point where the committed H200 run measured rnnfuse at 1.5-2.2x torch.nn's
peak), one training step (forward, backward from a fixed output gradient)
runs under the CUDA caching allocator's history
(torch.cuda.memory._record_memory_history). From the trace: the peak of live
bytes beyond what was live before the step, and the blocks live at that
peak, each with its size in bytes per row (T*B rows) and per hidden unit,
and the Python call site that allocated it, largest first. The driver's
buffers have known shapes (workspace N x 5H or 4H in the input dtype, gate
gradients N x 4H or 3H, gathered h_{t-1} N x H ...), so sizes name them.

The H200 run (a592397) measured 60-61 H bytes per row for LSTM bf16 (cuDNN:
28-33 H); two buffers since removed account for all of the gap to the
drivers' 33 H, and the workspace in bf16 and dW_hh without a gathered copy
of h_{t-1} take those to 22 H on the CPU (LSTM bf16 as on CUDA; GRU 24 H):
benchmarks/results/memory-prep_2026-11-28/ and workspace-dtype_2026-11-28/.

Then a probe: GRU bf16 on rnnfuse again, in a fresh process with the cuBLAS
and cuBLASLt workspaces limited to 1 MiB (CUBLAS_WORKSPACE_CONFIG,
CUBLASLT_WORKSPACE_SIZE: read once per process). The H200 run of 2026-11-30
found a 132 MiB block (1 MiB per SM) live at every rnnfuse peak; if it is a
GEMM library's workspace, the probe's peak drops by it.

Exit 0 when every point ran; 1 otherwise (the probe fails nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402

POINTS = [("LSTM", torch.bfloat16), ("GRU", torch.bfloat16), ("LSTM", torch.float32),
          ("GRU", torch.float32)]
T, B, H = 100, 256, 512


def call_site(frames) -> str:
    """The innermost frame in rnnfuse or torch.nn's Python, else the innermost
    Python frame."""
    py = [f for f in frames or [] if str(f.get("filename", "")).endswith(".py")]
    for f in py:
        name = str(f["filename"])
        if "/rnnfuse/" in name or "/torch/nn/" in name:
            return f"{Path(name).name}:{f.get('line')} {f.get('name')}"
    return f"{Path(str(py[0]['filename'])).name}:{py[0].get('line')} {py[0].get('name')}" if py else "-"


def peak_live_blocks(trace: list[dict], since: int = 0) -> tuple[int, list[dict]]:
    """(peak live bytes, the blocks live at the peak) of an allocator trace
    (torch.cuda.memory._snapshot()["device_traces"][device]), counting from
    entry `since` (blocks allocated before it are the baseline: not counted)."""
    live: dict[int, dict] = {}
    total = peak = 0
    at_peak: list[dict] = []
    for entry in trace[since:]:
        action = entry.get("action")
        if action == "alloc":
            live[entry["addr"]] = entry
            total += entry["size"]
            if total > peak:
                peak, at_peak = total, list(live.values())
        elif action == "free_completed" and entry["addr"] in live:
            total -= live.pop(entry["addr"])["size"]
    return peak, sorted(at_peak, key=lambda e: -e["size"])


def run_point(cell, dtype, impl) -> dict:
    import rnnfuse
    torch.manual_seed(0)
    cls = {"torch.nn": {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU},
           "rnnfuse": {"LSTM": rnnfuse.LSTM, "GRU": rnnfuse.GRU}}[impl][cell]
    model = cls(H, H, device="cuda", dtype=dtype)
    x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=True)
    grad = torch.randn(T, B, H, device="cuda", dtype=dtype)

    def step():
        model(x)[0].backward(grad)

    step()  # warm-up: cuBLAS/cuDNN handles and workspaces are not the step's
    x.grad = None
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    # Python stacks only: symbolising C++ frames at snapshot time can take minutes.
    torch.cuda.memory._record_memory_history(enabled="all", stacks="python", max_entries=200000)
    try:
        start = len(torch.cuda.memory._snapshot()["device_traces"][torch.cuda.current_device()])
        step()
        torch.cuda.synchronize()
        trace = torch.cuda.memory._snapshot()["device_traces"][torch.cuda.current_device()]
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    peak, blocks = peak_live_blocks(trace, start)
    rows = T * B
    return {"cell": cell, "dtype": str(dtype).replace("torch.", ""), "impl": impl, "T": T,
            "B": B, "H": H, "peak_bytes": peak, "peak_h_bytes_per_row": peak / rows / H,
            "blocks": [{"bytes": b["size"], "h_bytes_per_row": b["size"] / rows / H,
                        "site": call_site(b.get("frames"))} for b in blocks[:12]]}


# The probe's process: the GEMM libraries' workspaces at 1 MiB.
PROBE = ("GRU", torch.bfloat16, "rnnfuse")
PROBE_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":1024:1", "CUBLASLT_WORKSPACE_SIZE": "1024"}


def workspace_probe(json_path: Path, timeout_s: float = 60.0) -> dict:
    """PROBE's point in a fresh process under PROBE_ENV: its row, or {"error": why}."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", str(json_path), "--only",
           ":".join((PROBE[0], str(PROBE[1]).replace("torch.", ""), PROBE[2]))]
    try:
        r = subprocess.run(cmd, env={**os.environ, **PROBE_ENV}, capture_output=True, text=True,
                           timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    points = json.loads(json_path.read_text())["points"] if json_path.exists() else []
    if r.returncode != 0 or not points:
        return {"error": f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"}
    return {**points[0], "env": PROBE_ENV}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--only", default=None,
                    help="CELL:DTYPE:IMPL, one point and no probe (the probe's own process)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("memory_check: no CUDA device", file=sys.stderr)
        return 2
    result = {"points": [], "errors": []}
    only = tuple(args.only.split(":")) if args.only else None
    for cell, dtype in POINTS:
        for impl in ("torch.nn", "rnnfuse"):
            if only and only != (cell, str(dtype).replace("torch.", ""), impl):
                continue
            try:
                row = run_point(cell, dtype, impl)
            except Exception as e:  # noqa: BLE001 - report, go on
                result["errors"].append(f"{cell} {dtype} {impl}: {type(e).__name__}: {e}")
                print(result["errors"][-1], flush=True)
                continue
            result["points"].append(row)
            print(f"memory {cell} {row['dtype']} {impl}: peak {row['peak_bytes'] / 2**20:.1f} MiB "
                  f"= {row['peak_h_bytes_per_row']:.1f} H bytes/row; largest live: "
                  + "; ".join(f"{b['h_bytes_per_row']:.2f}H {b['site']}" for b in row["blocks"][:4]),
                  flush=True)
    if not only:
        probe = workspace_probe(Path(args.json).with_suffix(".probe.json"))
        result["workspace_probe"] = probe
        print(f"memory probe {PROBE[0]} {PROBE[1]} {PROBE[2]} with {PROBE_ENV}: "
              + (probe["error"] if "error" in probe else
                 f"peak {probe['peak_h_bytes_per_row']:.1f} H bytes/row; largest live: "
                 + "; ".join(f"{b['h_bytes_per_row']:.2f}H {b['site']}" for b in probe["blocks"][:4])),
              flush=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"memory_check: {len(result['points'])} points, {len(result['errors'])} errors", flush=True)
    return 0 if result["points"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
