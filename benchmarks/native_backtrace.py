"""Native stack traces of a crashed test process, without gdb (the GPU
machine has none): native_backtrace.c, built here with the system's C
compiler and loaded with LD_PRELOAD, writes the frames on a fatal signal;
frames() reads them back with each shared object's offset resolved to a
function (and line, where there is debug info) by addr2line.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("native_backtrace.c")
BEGIN = re.compile(r"^native_backtrace: signal (\d+)$")
# backtrace_symbols: "/path/lib.so(+0x1f2e)[0x7f...]" or "/path/lib.so(sym+0x2c)[0x7f...]"
FRAME = re.compile(r"^(\S+)\(([^()+]*)\+0x([0-9a-f]+)\)\s*\[0x[0-9a-f]+\]$")


def build(out_dir: Path) -> Path | None:
    """The handler as a shared object in out_dir; None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "native_backtrace.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(SOURCE)],
                       capture_output=True, text=True)
    return lib if r.returncode == 0 else None


def _resolve(module: str, offsets: list[str]) -> list[str]:
    """addr2line's 'function at file:line' for each offset in module ('' if unknown)."""
    tool = shutil.which("addr2line")
    if tool is None or not Path(module).exists():
        return [""] * len(offsets)
    r = subprocess.run([tool, "-f", "-C", "-e", module, *("0x" + o for o in offsets)],
                       capture_output=True, text=True)
    lines = r.stdout.splitlines()
    if r.returncode != 0 or len(lines) != 2 * len(offsets):
        return [""] * len(offsets)
    out = []
    for fn, where in zip(lines[::2], lines[1::2]):
        fn = "" if fn == "??" else fn
        where = "" if where.startswith("??") else where
        out.append(f"{fn} at {where}" if fn and where else fn)
    return out


def frames(text: str) -> tuple[int | None, list[str]]:
    """(the signal, the frames innermost first as 'module: function +0xOFF')
    of the last backtrace in text; (None, []) if it holds none."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if BEGIN.match(line.strip())]
    if not starts:
        return None, []
    sig = int(BEGIN.match(lines[starts[-1]].strip()).group(1))
    raw = []
    for line in lines[starts[-1] + 1:]:
        line = line.strip()
        if line == "native_backtrace: end":
            break
        m = FRAME.match(line)
        if m:
            raw.append(m.groups())
        elif line:
            raw.append((line, "", ""))
    by_module: dict[str, list[str]] = {}
    for module, sym, off in raw:
        if off and not sym:
            by_module.setdefault(module, []).append(off)
    resolved = {m: dict(zip(offs, _resolve(m, offs))) for m, offs in by_module.items()}
    out = []
    for module, sym, off in raw:
        name = Path(module).name
        if not off:
            out.append(module)
        elif sym:
            out.append(f"{name}: {_demangle(sym)} +0x{off}")
        else:
            out.append(f"{name}: {resolved[module].get(off) or '?'} (+0x{off})")
    return sig, out


def _demangle(sym: str) -> str:
    tool = shutil.which("c++filt")
    if tool is None:
        return sym
    r = subprocess.run([tool, sym], capture_output=True, text=True)
    return r.stdout.strip() or sym
