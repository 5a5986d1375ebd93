"""pytest for the GPU check, where one test cannot take the others down:

  python -m benchmarks.pytest_resume --junit OUT.xml [--deadline-s S]
      [--per-test-s S] TEST_PATHS... -- PYTEST_OPTIONS...

A kernel that traps or faults leaves its process's CUDA context broken: every
later CUDA call there fails, so in one pytest process the first such test
makes every test after it fail, and a hung test eats the stage. Here pytest
runs in a child process with this module as a plugin (``-p
benchmarks.pytest_resume``), which records every test's start and outcome
and, after each test, whether the CUDA context still works. When a test
breaks it (or the child dies, or one test runs past --per-test-s and is
killed), that test is recorded as an error and a fresh pytest runs the tests
not yet run, with the same options. Until --deadline-s; tests not reached
are reported as not run. A test whose process died of a signal (a host-side
crash: segfault, abort) is run once more alone, with
benchmarks/native_backtrace.c loaded, and its native frames are printed
(the GPU machine has no gdb).

At the end: one junit XML over all runs (--junit), and a last line in
pytest's summary form ("2 failed, 60 passed, 1 skipped in 40.1s (2
restarts)"), which gpu_check.sh reads. Exit status: 0 when every test that
ran passed or skipped and every test ran; 1 when one failed or broke
something; 5 when nothing was collected; 124 when the deadline left tests
not run and none failed; pytest's own status when it could not collect.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import native_backtrace
from benchmarks.cuda_health import cuda_context_error

STATE_ENV = "RNNFUSE_PYTEST_RESUME_DIR"


# ---- the plugin (in the pytest child) ------------------------------------------------

# Checks run after every test; each returns None or what is broken. Tests of
# this module append their own.
HEALTH_CHECKS = [cuda_context_error]

_outcomes: dict[str, tuple[str, str]] = {}


def _state_dir() -> Path | None:
    d = os.environ.get(STATE_ENV)
    return Path(d) if d else None


def _append(name: str, *fields: str) -> None:
    d = _state_dir()
    if d is None:
        return
    with open(d / name, "a", encoding="utf-8") as f:
        f.write("\t".join(x.replace("\t", " ").replace("\n", " ") for x in fields) + "\n")
        f.flush()


def pytest_collection_finish(session):
    d = _state_dir()
    if d is not None:
        # Node id (relative to pytest's rootdir) and the same test as an
        # argument that selects it from any working directory.
        lines = [f"{i.nodeid}\t{i.path}::{i.nodeid.partition('::')[2]}\n" for i in session.items]
        (d / "collected.txt").write_text("".join(lines), encoding="utf-8")


def pytest_runtest_logstart(nodeid, location):
    _append("progress.txt", "start", nodeid, f"{time.monotonic():.3f}")


def _merge(nodeid: str, outcome: str, message: str) -> None:
    # A test's outcome over its phases: an error in setup or teardown, a
    # failure in the call, a skip, or a pass; the worst one wins.
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    old = _outcomes.get(nodeid)
    if old is None or rank[outcome] > rank[old[0]]:
        _outcomes[nodeid] = (outcome, message)


def pytest_runtest_logreport(report):
    message = ""
    if report.failed:
        # The crash line pytest's -r summary shows (e.g. "AssertionError: ...").
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else (report.longreprtext or "")
        message = (text.strip().splitlines() or [""])[0][:300]
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "passed"
    _merge(report.nodeid, outcome, message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    nodeid = item.nodeid
    outcome, message = _outcomes.get(nodeid, ("error", "no report"))
    broken = next((b for b in (check() for check in HEALTH_CHECKS) if b), None)
    if broken:
        outcome, message = "error", f"broke the CUDA context ({broken}); {message}".rstrip("; ")
        _append("broken.txt", nodeid, broken)
        # Nothing after this test can run in this process: pytest stops here
        # (printing its failures as usual); the driver starts a fresh one.
        item.session.shouldstop = f"{nodeid} broke the CUDA context: {broken}"
    _append("progress.txt", "done", nodeid, outcome, message)


# ---- the driver ----------------------------------------------------------------------

def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _progress(state: Path) -> tuple[dict[str, tuple[str, str]], str | None, float | None]:
    """(outcomes of finished tests, the test started and not finished, when it started)."""
    done, started, t_start = {}, None, None
    for line in _read_lines(state / "progress.txt"):
        parts = line.split("\t")
        if parts[0] == "start":
            started, t_start = parts[1], float(parts[2])
        elif parts[0] == "done" and len(parts) >= 4:
            done[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
            if parts[1] == started:
                started, t_start = None, None
    return done, started, t_start


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_child(args: list[str], state: Path, deadline: float, per_test_s: float) -> tuple[int, str]:
    """One pytest process; (its status, why it was killed or '')."""
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **{STATE_ENV: str(state)})
    cmd = [sys.executable, "-m", "pytest", "-p", "benchmarks.pytest_resume", *args]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    while True:
        try:
            return proc.wait(timeout=0.2), ""
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now >= deadline:
            _kill(proc)
            return proc.returncode, "deadline"
        _, started, t_start = _progress(state)
        if started is not None and now - t_start > per_test_s:
            _kill(proc)
            return proc.returncode, f"timed out after {per_test_s:g} s"


def _junit(path: Path, order: list[str], results: dict[str, tuple[str, str]],
           seconds: float) -> None:
    suite = ET.Element("testsuite", name="pytest")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for nodeid in order:
        outcome, message = results[nodeid]
        file_part, _, rest = nodeid.partition("::")
        names = rest.split("::")
        classname = ".".join([file_part.removesuffix(".py").replace("/", "."), *names[:-1]])
        case = ET.SubElement(suite, "testcase", classname=classname, name=names[-1])
        counts["tests"] += 1
        if outcome == "failed":
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=message)
        elif outcome == "error":
            counts["errors"] += 1
            ET.SubElement(case, "error", message=message)
        elif outcome in ("skipped", "not run"):
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=message or outcome)
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def summary_line(results: dict[str, tuple[str, str]], seconds: float, restarts: int) -> str:
    n = {k: sum(1 for o, _ in results.values() if o == k)
         for k in ("failed", "passed", "skipped", "error", "not run")}
    parts = [f"{n['failed']} failed"] if n["failed"] else []
    parts.append(f"{n['passed']} passed")
    if n["skipped"]:
        parts.append(f"{n['skipped']} skipped")
    if n["error"]:
        parts.append(f"{n['error']} error{'s' if n['error'] > 1 else ''}")
    if n["not run"]:
        parts.append(f"{n['not run']} not run")
    return f"{', '.join(parts)} in {seconds:.1f}s ({restarts} restart{'s' if restarts != 1 else ''})"


def crash_frames(test: str, state: Path, seconds: float) -> str:
    """Run the test that killed its process by a signal once more, alone and
    with the native backtrace handler; print its native frames. Returns a
    short note for its error message."""
    lib = native_backtrace.build(state)
    if lib is None:
        return "no C compiler for a native backtrace"
    preload = os.environ.get("LD_PRELOAD", "")
    env = dict(os.environ, LD_PRELOAD=f"{lib}:{preload}" if preload else str(lib))
    env.pop(STATE_ENV, None)
    cmd = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", test]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(seconds, 1.0))
    except subprocess.TimeoutExpired:
        return "alone, it ran past its time (no native backtrace)"
    sig, frames = native_backtrace.frames(r.stdout + r.stderr)
    if sig is None:
        return f"alone in a fresh process it did not crash (exit {r.returncode})"
    print(f"pytest_resume: native backtrace of {test} (alone in a fresh process, signal {sig}):",
          flush=True)
    for f in frames[:48]:
        print(f"    {f}", flush=True)
    # The faulting code: the frames after the last signal frame (the handler's
    # own and faulthandler's come before it).
    last = max((i for i, f in enumerate(frames) if "__restore_rt" in f), default=-1)
    return f"native (signal {sig}): " + " < ".join(frames[last + 1:last + 4])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, options = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--junit", required=True, type=Path, help="the junit XML to write")
    ap.add_argument("--deadline-s", type=float, default=3600.0,
                    help="start no pytest process after this; kill one still running")
    ap.add_argument("--per-test-s", type=float, default=120.0,
                    help="a test running longer is killed and recorded as an error")
    ap.add_argument("--state", type=Path, default=None,
                    help="scratch folder (default: beside --junit)")
    ap.add_argument("paths", nargs="+", help="test files or node ids")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    deadline = t0 + args.deadline_s
    state_root = args.state or args.junit.with_suffix(".state")
    order: list[str] = []
    selector: dict[str, str] = {}
    results: dict[str, tuple[str, str]] = {}
    selection, restarts, run = list(args.paths), 0, 0
    while True:
        state = state_root / f"run{run}"
        if state.exists():
            for f in state.iterdir():
                f.unlink()
        rc, killed = run_child(options + selection, state, deadline, args.per_test_s)
        collected = _read_lines(state / "collected.txt")
        done, started, t_started = _progress(state)
        if run == 0:
            if killed == "deadline" and not collected:
                print("pytest_resume: the deadline came before pytest had collected", flush=True)
                return 124
            if not killed and not done and started is None and (rc != 0 or not collected):
                # Nothing ran: pytest could not collect, or found nothing.
                print(f"pytest_resume: pytest ran no test (exit {rc})", flush=True)
                return rc if rc != 0 else 5
            order = [line.split("\t")[0] for line in collected]
            selector = dict(line.split("\t", 1) for line in collected)
        results.update(done)
        culprit = None
        if started is not None and killed == "deadline":
            # Within its own time when the stage's ran out: not its fault.
            results[started] = ("not run", f"killed at the deadline, "
                                           f"{time.monotonic() - t_started:.0f} s into it")
        elif started is not None:
            why = killed or f"the pytest process died (exit {rc})"
            if not killed and rc < 0:
                left = min(args.per_test_s, deadline - time.monotonic() - 1.0)
                why += "; " + crash_frames(selector.get(started, started), state, left)
            results[started] = ("error", why)
            culprit = (started, why)
        elif _read_lines(state / "broken.txt"):
            nodeid, why = _read_lines(state / "broken.txt")[-1].split("\t", 1)
            culprit = (nodeid, f"broke the CUDA context: {why}")
        remaining = [t for t in order if t not in results]
        if culprit is None and not killed:
            # pytest ran its selection to the end (or stopped by its own
            # options, e.g. -x): what it did not run stays not run.
            for t in remaining:
                results[t] = ("not run", f"pytest (exit {rc}) stopped before it")
            break
        if not remaining:
            break
        if killed == "deadline" or time.monotonic() >= deadline:
            for t in remaining:
                results[t] = ("not run", "deadline")
            break
        restarts += 1
        run += 1
        print(f"pytest_resume: {culprit[0]}: {culprit[1]}; restarting pytest for the "
              f"{len(remaining)} tests not run yet", flush=True)
        selection = [selector[t] for t in remaining]
    seconds = time.monotonic() - t0
    args.junit.parent.mkdir(parents=True, exist_ok=True)
    _junit(args.junit, order, results, seconds)
    bad = [t for t in order if results[t][0] in ("failed", "error")]
    for t in bad:
        print(f"pytest_resume: {results[t][0].upper()} {t} - {results[t][1]}", flush=True)
    print(f"== {summary_line(results, seconds, restarts)} ==", flush=True)
    if bad:
        return 1
    if any(results[t][0] == "not run" for t in order):
        return 124
    return 0


if __name__ == "__main__":
    sys.exit(main())
