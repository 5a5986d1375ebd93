"""CI compile gates of the per-step kernels (csrc/cuda/lstm_step.cuh,
gru_step.cuh), read from the built extension with cuobjdump as for the
persistent kernels (test_persistent_build.py): for every target in the build,
every step kernel exists in each of its tiles, keeps to 255 registers with
no stack frame, spills or local loads/stores (the two-direction launch reads
its arguments from the kernel parameters in place: __grid_constant__), and
its tensor-core tiles run the MMA meant for the dtype while its FMA tiles run
none, and stage their operands with 16-byte global loads and shared-memory
stores (VecChunkStage). Needs no GPU: it runs whenever the build has CUDA.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from rnnfuse import _build_config
from test_persistent_build import (  # noqa: F401
    built_archs, cuobjdump, extension, per_arch, sass_by_arch)

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="rnnfuse._C was built without CUDA: no kernels to inspect")

STEP_KERNEL = re.compile(r"_ZN7rnnfuse4cuda\d+(lstm|gru)_(fwd|bwd)_step_kernelI(\w+?)NS0_(\d+)"
                         r"(MmaGemm|SimtGemm)I")
# Mangled scalar types -> the HMMA form of their tensor-core tiles (WMMA's
# TF32 m16n16k8 runs as k=4 HMMAs).
HMMA = {"N3c104HalfE": re.compile(r"HMMA\.16816\.F32(?!\.BF16)"),
        "N3c108BFloat16E": re.compile(r"HMMA\.16816\.F32\.BF16"),
        "f": re.compile(r"HMMA\.1684\.F32\.TF32")}
# Tiles per kernel family: small and large, tensor-core (each with the base and
# the deep k-chunk) and FMA (fp64: FMA only).
TILES_PER_DTYPE = {"N3c104HalfE": 6, "N3c108BFloat16E": 6, "f": 6, "d": 2}
# The tensor-core tiles' 16-byte staging: global loads and shared stores.
VEC_LOAD = re.compile(r"\bLDG\.E(\.\w+)*\.128\b")
VEC_STORE = re.compile(r"\bSTS\.128\b")


def step_kernels(text: str) -> dict[tuple[str, str], str]:
    return {key: block for key, block in text.items() if STEP_KERNEL.match(key[1])}


def test_every_step_kernel_in_every_tile_fits_without_spills(extension, cuobjdump):  # noqa: F811
    res = subprocess.run([cuobjdump, "-res-usage", extension], check=True, capture_output=True,
                         text=True).stdout
    usage = step_kernels(per_arch(res, re.compile(r"Function (\S+):")))
    archs = built_archs()
    assert archs, _build_config.CUDA_ARCH_LIST
    for arch in archs:
        names = [name for a, name in usage if a == arch]
        per_family = {}
        for name in names:
            cell, way, scalar = STEP_KERNEL.match(name).group(1, 2, 3)
            per_family[(cell, way, scalar)] = per_family.get((cell, way, scalar), 0) + 1
        want = {(c, w, s): n for c in ("lstm", "gru") for w in ("fwd", "bwd")
                for s, n in TILES_PER_DTYPE.items()}
        assert per_family == want, f"{arch}: step kernels per family {per_family}"
        for name in names:
            fields = dict(re.findall(r"(\w+):(\d+)", usage[(arch, name)].split(":", 1)[1]))
            print(f"  {arch} {name[16:90]}: REG {fields['REG']} STACK {fields['STACK']} "
                  f"LOCAL {fields['LOCAL']}")
            assert int(fields["REG"]) <= 255, (arch, name, fields)
            assert int(fields["STACK"]) == 0, f"{arch} {name}: stack frame {fields['STACK']} B"
            assert int(fields["LOCAL"]) == 0, f"{arch} {name}: local memory {fields['LOCAL']} B"


def test_step_kernels_sass_tensor_cores_where_meant_and_no_local_memory(extension,  # noqa: F811
                                                                        cuobjdump):  # noqa: F811
    res = subprocess.run([cuobjdump, "-res-usage", extension], check=True, capture_output=True,
                         text=True).stdout
    names = sorted({name for _, name in step_kernels(per_arch(res, re.compile(r"Function (\S+):")))})
    code = sass_by_arch(extension, cuobjdump, names)
    for name in names:
        scalar, gemm = STEP_KERNEL.match(name).group(3, 5)
        for arch in built_archs():
            body = code.get((arch, name))
            assert body is not None, f"no {arch} SASS for {name}"
            assert not re.search(r"\b(LDL|STL)\b", body), f"{arch} {name}: local loads/stores"
            if gemm == "MmaGemm":
                assert HMMA[scalar].search(body), f"{arch} {name}: no {HMMA[scalar].pattern}"
                assert VEC_LOAD.search(body), f"{arch} {name}: no 16-byte global loads"
                assert VEC_STORE.search(body), f"{arch} {name}: no 16-byte shared stores"
            else:
                assert "HMMA" not in body, f"{arch} {name}: an FMA tile with tensor-core MMAs"
