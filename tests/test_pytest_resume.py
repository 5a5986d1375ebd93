"""benchmarks/pytest_resume.py, the GPU check's pytest driver, on the CPU: a
test that breaks the process (here a fake "CUDA context" check registered by
the sample's conftest), hangs or kills its process costs only itself; the
tests after it run in a fresh pytest; the junit XML and the summary line
count every test once; the deadline leaves the rest not run."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import cuda_health, gpu_check_report

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
import os

import benchmarks.pytest_resume as resume


def _fake_context_error():
    # Broken in the process whose test "broke" it, as a sticky CUDA error is.
    mark = os.path.join(os.environ["SAMPLE_DIR"], f"broken.{os.getpid()}")
    return "fake sticky error" if os.path.exists(mark) else None


resume.HEALTH_CHECKS.append(_fake_context_error)
"""

SAMPLE = """
import os
import time

import pytest


def test_a():
    pass


def test_b_breaks_the_context():
    open(os.path.join(os.environ["SAMPLE_DIR"], f"broken.{os.getpid()}"), "w").close()


def test_c():
    pass


def test_d_hangs():
    time.sleep(60)


def test_e_fails():
    assert 1 == 2, "a plain failure"


def test_f_dies():
    os._exit(7)


@pytest.mark.skip(reason="skipped here")
def test_g():
    pass


@pytest.mark.parametrize("n", [1, 2])
def test_h(n):
    assert n
"""


def run_driver(tmp_path, files: dict[str, str], *driver_args, options=("-q", "-p", "no:cacheprovider")):
    sample = tmp_path / "sample"
    sample.mkdir()
    for name, text in files.items():
        (sample / name).write_text(textwrap.dedent(text))
    junit = tmp_path / "out" / "tests.xml"
    env = dict(os.environ, SAMPLE_DIR=str(sample), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "benchmarks.pytest_resume", "--junit", str(junit), *driver_args,
           str(sample), "--", *options]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=env)
    print(r.stdout[-3000:], r.stderr[-2000:])
    return r, junit


def cases(junit: Path) -> dict[str, str]:
    """test name -> outcome, from the merged junit XML."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = next((c.tag for c in case), "passed")
        out[case.get("name")] = {"failure": "failed", "error": "error"}.get(kind, kind)
    return out


def test_a_broken_hung_or_dead_test_costs_only_itself(tmp_path):
    r, junit = run_driver(tmp_path, {"conftest.py": CONFTEST, "test_sample.py": SAMPLE},
                          "--per-test-s", "3")
    assert r.returncode == 1
    assert cases(junit) == {
        "test_a": "passed", "test_b_breaks_the_context": "error", "test_c": "passed",
        "test_d_hangs": "error", "test_e_fails": "failed", "test_f_dies": "error",
        "test_g": "skipped", "test_h[1]": "passed", "test_h[2]": "passed"}
    # Three fresh processes: after b (context), d (timeout) and f (death).
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("== 1 failed, 4 passed, 1 skipped, 3 errors in ") and "(3 restarts)" in last
    for why in ("test_b_breaks_the_context: broke the CUDA context: fake sticky error",
                "test_d_hangs: timed out after 3 s", "test_f_dies: the pytest process died (exit 7)"):
        assert why in r.stdout
    assert "AssertionError: a plain failure" in r.stdout
    # The GPU check's report reads it as it read pytest's own junit.
    s = gpu_check_report.junit_summary([junit])
    assert (s["tests"], s["passed"], s["failures"], s["errors"], s["skipped"]) == (9, 4, 1, 3, 1)
    # (The class name carries the sample's path from pytest's rootdir.)
    names = "\n".join(s["failed_names"])
    assert "test_sample::test_d_hangs - timed out after 3 s" in names, names
    assert "test_sample::test_e_fails - AssertionError: a plain failure" in names, names


def test_a_crashed_test_is_rerun_alone_for_its_native_frames(tmp_path):
    """A segfault in native code (here ctypes reading address 0): the test is
    an error whose message and log carry the native frames of a rerun alone,
    through Python's faulthandler (pytest enables it) to the faulting call."""
    sample = """
        import ctypes


        def test_a():
            pass


        def test_b_segfaults():
            ctypes.string_at(0)


        def test_c():
            pass
    """
    r, junit = run_driver(tmp_path, {"test_crash.py": sample})
    assert r.returncode == 1
    assert cases(junit) == {"test_a": "passed", "test_b_segfaults": "error", "test_c": "passed"}
    assert "native backtrace of" in r.stdout and "(alone in a fresh process, signal 11)" in r.stdout
    # The faulting frames follow the signal frame: libc's strlen called from _ctypes.
    error = next(c for c in ET.parse(junit).getroot().iter("testcase")
                 if c.get("name") == "test_b_segfaults")[0].get("message")
    assert "died (exit -11); native (signal 11): libc" in error and "< _ctypes" in error, error


def test_the_deadline_leaves_the_rest_not_run(tmp_path):
    sample = """
        import time


        def test_a():
            pass


        def test_b_slow():
            time.sleep(60)


        def test_c():
            pass
    """
    r, junit = run_driver(tmp_path, {"test_slow.py": sample}, "--deadline-s", "4")
    # b was killed by the deadline within its own time: not run, as c.
    assert r.returncode == 124
    assert cases(junit) == {"test_a": "passed", "test_b_slow": "skipped", "test_c": "skipped"}
    assert "1 passed, 2 not run" in r.stdout.strip().splitlines()[-1]


def test_all_passing_is_one_process_and_exit_0(tmp_path):
    r, junit = run_driver(tmp_path, {"test_ok.py": "def test_a():\n    pass\n\n\ndef test_b():\n    pass\n"})
    assert r.returncode == 0
    assert cases(junit) == {"test_a": "passed", "test_b": "passed"}
    assert r.stdout.strip().splitlines()[-1].startswith("== 2 passed in ")
    assert "(0 restarts)" in r.stdout


@pytest.mark.parametrize("files, rc", [({"test_bad.py": "def test_a(:\n"}, 2),
                                       ({"test_none.py": "x = 1\n"}, 5)])
def test_nothing_run_passes_pytests_status_through(tmp_path, files, rc):
    r, junit = run_driver(tmp_path, files)
    assert r.returncode == rc and not junit.exists()
    assert "pytest_resume: pytest ran no test" in r.stdout


def test_the_cuda_check_is_quiet_without_cuda():
    # Torch imported, CUDA never initialized (this machine): nothing broken.
    import torch  # noqa: F401
    assert cuda_health.cuda_context_error() is None


def test_the_gpu_check_runs_its_pytest_stages_through_it():
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    assert script.count("-m benchmarks.pytest_resume") == 1
    calls = [line for line in script.splitlines()
             if line.lstrip().removeprefix("RNNFUSE_PERSISTENT_WATCHDOG_S=5 ")
             .startswith("resumable_pytest ")]
    assert len(calls) == 3, "tests (test_cuda_* and -k cuda) and ptests"
    assert " -m pytest " not in script
