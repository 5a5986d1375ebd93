"""The sources must stay valid C++17: torch 2.11, on the GPU machine, builds
extensions as C++17 (torch 2.14, here and in CI, as C++20, which accepts more).
Two C++20-only constructs broke that build unseen (a requires-expression in
step_emulate.cu; a template-id naming an undeclared function in a discarded
`if constexpr` branch, kernels_impl.h), found by building against torch 2.11
on the CPU (benchmarks/torch_compat.sh). Here, cheaply on every change: the
plain C++ headers and the planner compile as strict C++17, and no source uses
a construct C++17 does not have."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"

# (pattern, what it is). Matched on code with // comments removed.
CXX20_ONLY = [
    (r"\brequires\b", "a requires-expression or -clause"),
    (r"\bconcept\b", "a concept"),
    (r"<=>", "the three-way comparison"),
    (r"\bconsteval\b|\bconstinit\b", "consteval / constinit"),
    (r"\bchar8_t\b", "char8_t"),
    (r"\busing\s+enum\b", "using enum"),
    (r"\[\[(un)?likely\]\]", "[[likely]] / [[unlikely]]"),
    (r"\[[^\[\]]*\]\s*<\s*(typename|class|int|auto|bool)\b", "a template lambda"),
    (r"std::(span|bit_cast|ranges|format|erase_if|ssize|is_constant_evaluated|popcount|"
     r"countl_zero|countr_zero|midpoint|lerp|source_location)\b", "a C++20 library name"),
    (r"\.(contains|starts_with|ends_with)\(", "a C++20 member function"),
    (r"#\s*include\s*<(span|bit|concepts|ranges|format|numbers|compare|source_location|"
     r"version)>", "a C++20 header"),
]

SOURCES = sorted(p for ext in ("h", "cpp", "cu", "cuh") for p in CSRC.rglob(f"*.{ext}"))


def _code(path: Path) -> str:
    return "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())


def _cxx20_uses(text: str) -> list[str]:
    return [what for pattern, what in CXX20_ONLY if re.search(pattern, text)]


def test_the_patterns_catch_what_broke_the_torch_211_build():
    assert _cxx20_uses("  if constexpr (requires { typename Gemm::elem_t; }) {") == \
        ["a requires-expression or -clause"]
    assert _cxx20_uses("auto f = []<typename T>(T x) { return x; };") == ["a template lambda"]
    assert _cxx20_uses("if (name.starts_with(\"x\")) {}") == ["a C++20 member function"]
    assert _cxx20_uses("#include <span>") == ["a C++20 header"]
    assert _cxx20_uses("  if constexpr (stages_elements<Gemm>::value) {") == []
    assert _cxx20_uses("if (x[i] < y && a[j] > 2) {}") == []


def test_no_source_uses_a_cxx20_only_construct():
    assert len(SOURCES) > 50
    found = [f"{p.relative_to(ROOT)}: {what}" for p in SOURCES for what in _cxx20_uses(_code(p))]
    assert not found, "C++20-only constructs (the GPU machine's torch 2.11 builds as C++17):\n" + \
        "\n".join(found)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_plain_cxx_headers_and_the_planner_compile_as_strict_cxx17(tmp_path):
    """The headers the kernels, the emulators and the planner share (no
    ATen), and the planner itself, under -std=c++17 -pedantic-errors."""
    tu = tmp_path / "plain.cpp"
    tu.write_text("".join(f'#include "{h}"\n' for h in (
        "persistent/plan.h", "persistent/layout.h", "persistent/cluster_layout.h", "step_plan.h",
        "gate_math.h", "step.h")))
    for src in (tu, CSRC / "persistent" / "plan.cpp"):
        out = subprocess.run(["g++", "-std=c++17", "-pedantic-errors", "-Wall", "-fsyntax-only",
                              f"-I{CSRC}", str(src)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
