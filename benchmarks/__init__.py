"""rnnfuse benchmark suite: rnnfuse against torch.nn (cuDNN on a GPU).

Entry point: ``python -m benchmarks.run`` (see benchmarks/run.py). Modules,
one job each:
  grid.py        points and presets           workload.py  modules, inputs, the timed step
  gate.py        correctness before timing    probe.py     which code path a call took
  timing.py      alternated CUDA-event /      physics.py   FLOP counts, per-step time
                 clock timing, peak memory    ceilings.py  measured GEMM and copy peaks
  noise.py       when a point is NOISY        hostload.py  CPU time other processes took
  cudnn_algo.py  PyTorch's cuDNN algorithm    env.py       card, driver, versions, git
  measure.py     one point, end to end        report.py    results.json, report.md, console
  plots.py       speed-up PNGs

GPU check: ``bash benchmarks/gpu_check.sh`` (build, CUDA tests, sanitizers on
sanitizer_cases.py, the quick benchmark, and one report written by
gpu_check_report.py). Its pytest runs go through pytest_resume.py and its
persistent-tier measurements (persist_check.py) resume the same way: a test
or measurement that breaks its process's CUDA context (cuda_health.py)
costs only itself.
"""
