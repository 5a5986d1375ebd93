"""Side by side: grad_error_before.txt (fp32 workspace, 6d15b1e) and
grad_error_after.txt (workspace in the input dtype), with torch.nn's error
at the same dtype on the CPU:

  python benchmarks/results/workspace-dtype_2026-11-28/compare.py > grad_error_compare.txt
"""
import pathlib

HERE = pathlib.Path(__file__).parent


def parse(name):
    out, case = {}, None
    for line in (HERE / name).read_text().splitlines():
        cols = line.split()
        if cols and cols[0] in ("LSTM", "GRU"):
            case = " ".join(cols)
        elif case and len(cols) == 3 and cols[0] != "tensor":
            out.setdefault(case, {})[cols[0]] = (float(cols[1]), float(cols[2]))
    return out


before, after = parse("grad_error_before.txt"), parse("grad_error_after.txt")
print("max |err| / max |ref| vs float64; rnnfuse before (fp32 workspace) and after "
      "(workspace in the input dtype); torch.nn on the CPU at that dtype")
worst = 0.0
for case, rows in after.items():
    print(f"\n{case}\n  {'tensor':14s} {'before':>9s} {'after':>9s} {'after/bef':>9s} {'torch.nn':>9s}")
    for k, (err, nn_err) in rows.items():
        ratio = err / before[case][k][0]
        worst = max(worst, ratio)
        print(f"  {k:14s} {before[case][k][0]:9.2e} {err:9.2e} {ratio:9.2f} {nn_err:9.2e}")
print(f"\nlargest after/before ratio: {worst:.2f}")
