"""CI compile gates of the persistent kernels, read from the built extension
with cuobjdump (the resource report ptxas -v prints, per kernel and arch, and
the SASS): no spills or local memory, no stack frame, at most 255 registers,
the tensor-core instruction meant (HMMA; TF32 for fp32; FFMA and no HMMA in
the exact-fp32 kernels), no LDL/STL, for
every target in the build (CI: sm_80 and sm_90). The cluster tier's kernels
on sm_90: the DSMEM exchange (STAS, SYNCS) and no gpu- or system-scope
MEMBAR anywhere in them (nor a flag in global memory), and each bracket's
epilogue issued before its MMA sums are stored; on older targets a stub
(the planner never picks them there). The grid kernels' MMA loops: a
one-n-tile chain and short full-chunk k-tiles; their FMA loops mostly FFMA.
No integer division on the step paths: none in the cluster forward's step
from its wait on, one per grid step loop (before the flag wait) and none
in the gather.
Needs no GPU: it runs whenever the build has CUDA; cuobjdump comes from the
CUDA toolkit or from PyPI's nvidia-cuda-cuobjdump (requirements.txt)."""
from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import rnnfuse
from rnnfuse import _build_config

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="rnnfuse._C was built without CUDA: no kernels to inspect")

KERNELS = {  # mangled name -> the HMMA form its SASS must contain
    f"_ZN7rnnfuse7persist18persist_{kind}_kernelI{elem}LNS0_4CellE{cell}EEEvNS0_{args}E": hmma
    for kind, args in (("fwd", "16PersistFwdLaunch"), ("bwd", "16PersistBwdLaunch"))
    for elem, hmma in (("6__half", "HMMA.16816.F32"), ("13__nv_bfloat16", "HMMA.16816.F32.BF16"),
                       ("f", "HMMA.1688.F32.TF32"))
    for cell in (0, 1)
}
# The exact-fp32 kernels (TF32 off): CUDA-core FMAs, no tensor cores.
FMA_KERNELS = [
    f"_ZN7rnnfuse7persist22persist_{kind}_fma_kernelILNS0_4CellE{cell}EEEvNS0_{args}E"
    for kind, args in (("fwd", "16PersistFwdLaunch"), ("bwd", "16PersistBwdLaunch")) for cell in (0, 1)
]
# The grid forward with its exchange through LL words (plan.ll; kernel.cuh
# LL = true): mangled name -> HMMA form, and its exact-fp32 twins.
LL_KERNELS = {
    f"_ZN7rnnfuse7persist21persist_fwd_ll_kernelI{elem}LNS0_4CellE{cell}EEEvNS0_16PersistFwdLaunchE": hmma
    for elem, hmma in (("6__half", "HMMA.16816.F32"), ("13__nv_bfloat16", "HMMA.16816.F32.BF16"),
                       ("f", "HMMA.1688.F32.TF32"))
    for cell in (0, 1)
}
LL_FMA_KERNELS = [
    f"_ZN7rnnfuse7persist25persist_fwd_fma_ll_kernelILNS0_4CellE{cell}EEEvNS0_16PersistFwdLaunchE"
    for cell in (0, 1)
]
# The grid backward with its gate gradients and K-split partial sums through
# LL words (plan.ll; kernel_bwd.cuh LL = true): mangled name -> HMMA form
# (None: the exact-fp32 twins, FFMA).
LL_BWD_KERNELS = {
    f"_ZN7rnnfuse7persist21persist_bwd_ll_kernelI{elem}LNS0_4CellE{cell}EEEvNS0_16PersistBwdLaunchE": hmma
    for elem, hmma in (("6__half", "HMMA.16816.F32"), ("13__nv_bfloat16", "HMMA.16816.F32.BF16"),
                       ("f", "HMMA.1688.F32.TF32"))
    for cell in (0, 1)
} | {f"_ZN7rnnfuse7persist25persist_bwd_fma_ll_kernelILNS0_4CellE{cell}EEEvNS0_16PersistBwdLaunchE":
     None for cell in (0, 1)}
EXCHANGE = "_ZN7rnnfuse7persist23persist_exchange_kernelENS0_11PersistArgsE"
LL_EXCHANGE = "_ZN7rnnfuse7persist26persist_ll_exchange_kernelENS0_11LlBenchArgsE"
CLUSTER_KERNELS = {  # the cluster tier (sm_90), mangled name -> HMMA form
    f"_ZN7rnnfuse7persist22persist_cluster_kernelI{elem}LNS0_4CellE{cell}EEEvNS0_20PersistClusterLaunchE": hmma
    for elem, hmma in (("6__half", "HMMA.16816.F32"), ("13__nv_bfloat16", "HMMA.16816.F32.BF16"),
                       ("f", "HMMA.1688.F32.TF32"))
    for cell in (0, 1)
}
CLUSTER_EXCHANGE = "_ZN7rnnfuse7persist31persist_cluster_exchange_kernelENS0_18PersistClusterArgsE"
# The cluster tier's backward (no launch path yet): every m-tile stride M.
CLUSTER_BWD_KERNELS = {
    f"_ZN7rnnfuse7persist26persist_cluster_bwd_kernelI{elem}LNS0_4CellE{cell}ELi{m}EEEvNS0_"
    f"23PersistClusterBwdLaunchE": hmma
    for elem, hmma in (("6__half", "HMMA.16816.F32"), ("13__nv_bfloat16", "HMMA.16816.F32.BF16"),
                       ("f", "HMMA.1688.F32.TF32"))
    for cell in (0, 1) for m in (1, 2, 4, 6)
}
CLUSTER_ALL = list(CLUSTER_KERNELS) + [CLUSTER_EXCHANGE] + list(CLUSTER_BWD_KERNELS)
GPU_MEMBAR = re.compile(r"\bMEMBAR\.[A-Z.]*(GPU|SYS)\b")
# One SASS instruction: address, opcode (a predicate guard skipped), operands.
SASS_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def find_cuobjdump() -> str | None:
    for cand in (shutil.which("cuobjdump"),
                 os.path.join(_build_config.CUDA_HOME or "", "bin", "cuobjdump"),
                 *glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages", "nvidia",
                                         "*", "bin", "cuobjdump"))):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def built_archs() -> set[str]:
    """sm_XY of every real (SASS) target in TORCH_CUDA_ARCH_LIST."""
    out = set()
    for item in re.split(r"[;\s]+", _build_config.CUDA_ARCH_LIST or ""):
        m = re.match(r"(\d+)\.(\d+)", item)
        if m:
            out.add(f"sm_{m.group(1)}{m.group(2)}")
    return out


@pytest.fixture(scope="module")
def extension() -> str:
    sos = glob.glob(os.path.join(os.path.dirname(rnnfuse.__file__), "_C*.so"))
    assert len(sos) == 1, sos
    return sos[0]


@pytest.fixture(scope="module")
def cuobjdump() -> str:
    tool = find_cuobjdump()
    assert tool, ("the build has CUDA but no cuobjdump was found: pip install -r requirements.txt "
                  "(nvidia-cuda-cuobjdump) or put the toolkit's bin/ on PATH")
    return tool


def per_arch(text: str, record: re.Pattern) -> dict[tuple[str, str], str]:
    """{(arch, function): its record} from cuobjdump output, where 'arch = sm_XY'
    lines precede each ELF's functions."""
    out, arch = {}, None
    for block in re.split(r"\n(?=arch = |\s*Function\s*:?\s)", text):
        m = re.match(r"arch = (sm_\d+)", block)
        if m:
            arch = m.group(1)
            continue
        f = record.match(block.strip())
        if f and arch:
            out[(arch, f.group(1))] = block
    return out


@functools.lru_cache(maxsize=1)
def all_sass(extension, cuobjdump) -> dict[tuple[str, str], str]:
    """{(arch, function): its SASS} of every kernel of the extension: one
    disassembly (about 40 s on CI's 2 cores, ~340 MB) for all the SASS
    gates here and in test_step_build.py; a `-fun` run per test cost
    about 110 s in all."""
    sass = subprocess.run([cuobjdump, "-sass", extension], check=True, capture_output=True,
                          text=True).stdout
    return per_arch(sass, re.compile(r"Function : (\S+)"))


def sass_by_arch(extension, cuobjdump, names) -> dict[tuple[str, str], str]:
    """{(arch, function): its SASS} of the named (mangled) kernels."""
    wanted = set(names)
    return {key: body for key, body in all_sass(extension, cuobjdump).items() if key[1] in wanted}


def test_registers_spills_stack_and_local_memory(extension, cuobjdump):
    res = subprocess.run([cuobjdump, "-res-usage", extension], check=True, capture_output=True,
                         text=True).stdout
    usage = per_arch(res, re.compile(r"Function (\S+):"))
    archs = built_archs()
    assert archs, _build_config.CUDA_ARCH_LIST
    for name in (list(KERNELS) + FMA_KERNELS + list(LL_KERNELS) + LL_FMA_KERNELS
                 + [EXCHANGE, LL_EXCHANGE] + CLUSTER_ALL):
        for arch in archs:
            block = usage.get((arch, name))
            assert block is not None, f"{name} has no {arch} code in {extension}"
            fields = dict(re.findall(r"(\w+):(\d+)", block.split(":", 1)[1]))
            print(f"  {arch} {name[:60]}: REG {fields['REG']} STACK {fields['STACK']} "
                  f"LOCAL {fields['LOCAL']}")
            assert int(fields["REG"]) <= 255, (arch, name, fields)
            assert int(fields["STACK"]) == 0, f"{arch} {name}: stack frame {fields['STACK']} B"
            assert int(fields["LOCAL"]) == 0, f"{arch} {name}: local memory (spills) {fields['LOCAL']} B"


def test_ll_exchange_has_no_fence_and_moves_tags_with_their_data(extension, cuobjdump):
    """The LL exchange bench (ll_exchange_bench.cu) measures a handoff with no
    fence: a MEMBAR, an L1 invalidate (CCTL, an acquire's) or a fence in it
    would measure the release/acquire exchange again. Its polls are 16-byte
    strong loads (two 8-byte words, each single-copy atomic), its words
    8-byte strong stores: a tag and its data in one store."""
    code = sass_by_arch(extension, cuobjdump, [LL_EXCHANGE])
    for arch in built_archs():
        sass = code[(arch, LL_EXCHANGE)]
        for bad in ("MEMBAR", "ERRBAR", "CCTL", "FENCE"):
            assert bad not in sass, f"{arch}: {bad} in the LL exchange"
        assert re.search(r"LDG\.E\.128\.STRONG\.(SYS|GPU)", sass), arch
        assert re.search(r"STG\.E\.64\.STRONG\.(SYS|GPU)", sass), arch
        assert not re.search(r"STG\.E(\.\d+)?\.STRONG\.(SYS|GPU)", sass.replace("STG.E.64.STRONG", "")), arch


def polls_in_a_row(ops: list[str], poll: str) -> int:
    """The longest run of opcodes matching `poll` with no branch between
    them (other instructions may sit among them)."""
    run, best = 0, 0
    for op in ops:
        if re.match(poll, op):
            run += 1
            best = max(best, run)
        elif op.startswith("BRA"):
            run = 0
    return best


def fence_free_ops(arch: str, name: str, body: str | None) -> list[str]:
    """An LL kernel's opcodes, after checking it has no MEMBAR, ERRBAR, L1
    invalidate (CCTL: an acquire's) or fence, no gpu-scope strong store (a
    flag's release) and no local memory."""
    assert body is not None, f"no {arch} SASS for {name}"
    for bad in ("MEMBAR", "ERRBAR", "CCTL", "FENCE"):
        assert bad not in body, f"{arch} {name}: {bad} in an LL kernel"
    assert not re.search(r"\b(LDL|STL)\b", body), f"{arch} {name}: local loads/stores"
    ops = [op for _, op, _ in SASS_INSN.findall(body)]
    releases = [op for op in ops if op.startswith("ST") and "STRONG.GPU" in op]
    assert not releases, f"{arch} {name}: gpu-scope stores (a flag's release) {releases}"
    return ops


def test_ll_forward_kernels_exchange_without_fences_or_flags(extension, cuobjdump):
    """The grid forward with the LL exchange (exchange.cuh gather_ll /
    publish_ll): no MEMBAR, L1 invalidate (CCTL: an acquire's) or fence, and
    no gpu-scope strong store (a flag's release) anywhere in it; its polls
    16-byte strong loads and its words 8-byte strong stores (a tag and its
    data in one store), the poll round's loads issued before the first is
    checked (exchange.cuh kLlBatch, 4 in the exact-fp32 kernels); the tensor
    cores (or FFMA) as the flag kernels. h0's rows (step 0, a packed batch
    growing) still come through gather_rows: L2-only loads (ld.global.cg)
    or cp.async.cg, no fence."""
    names = list(LL_KERNELS) + LL_FMA_KERNELS
    code = sass_by_arch(extension, cuobjdump, names)
    for name in names:
        for arch in built_archs():
            body = code.get((arch, name))
            ops = fence_free_ops(arch, name, body)
            polls = [i for i, op in enumerate(ops) if re.match(r"LDG\.E\.128\.STRONG\.SYS", op)]
            words = [op for op in ops if re.match(r"STG\.E\.64\.STRONG\.SYS", op)]
            assert polls and words, f"{arch} {name}: {len(polls)} polls, {len(words)} word stores"
            # A round's kLlBatch loads, all in flight before the first tag check.
            best = polls_in_a_row(ops, r"LDG\.E\.128\.STRONG\.SYS")
            print(f"  {arch} {name[22:70]}: {len(polls)} polls ({best} in a row), "
                  f"{len(words)} word stores")
            least = 8 if name in LL_KERNELS else 4  # exchange.cuh kLlBatch, kLlBatchFma
            assert best >= least, f"{arch} {name}: at most {best} polls in flight"
            if name in LL_KERNELS:
                assert LL_KERNELS[name] in body, f"{arch} {name}: no {LL_KERNELS[name]}"
            else:
                assert "HMMA" not in body and "FFMA" in body, f"{arch} {name}: not exact FMAs"


def test_ll_backward_kernels_exchange_without_fences_or_flags(extension, cuobjdump):
    """The grid backward with its exchanges through LL words (kernel_bwd.cuh
    LL = true): no MEMBAR, L1 invalidate (CCTL: an acquire's), ERRBAR or
    fence, and no gpu-scope strong store (a flag's release) anywhere in it;
    the gate gradients polled with 16-byte strong loads, kLlBwdBatch = 4 of
    a round issued before the first tag check; a K split's partial sums
    polled with 8-byte strong loads, kItemSlots x kMaxKSplit = 8 (predicated)
    in a row; both stored as 8-byte strong words (a tag and its data in one
    store); the tensor cores (or FFMA) as the flag kernels; no local
    memory."""
    code = sass_by_arch(extension, cuobjdump, list(LL_BWD_KERNELS))
    for name, hmma in LL_BWD_KERNELS.items():
        for arch in built_archs():
            body = code.get((arch, name))
            ops = fence_free_ops(arch, name, body)
            words = [op for op in ops if re.match(r"STG\.E\.64\.STRONG\.SYS", op)]
            pairs = polls_in_a_row(ops, r"LDG\.E\.128\.STRONG\.SYS")
            sums = polls_in_a_row(ops, r"LDG\.E\.64\.STRONG\.SYS")
            print(f"  {arch} {name[22:70]}: {len(words)} word stores, {pairs} 16-byte polls and "
                  f"{sums} 8-byte polls in a row")
            assert words, f"{arch} {name}: no 8-byte strong word stores"
            assert pairs >= 4, f"{arch} {name}: at most {pairs} gate-gradient polls in flight"
            assert sums >= 8, f"{arch} {name}: at most {sums} partial-sum polls in flight"
            if hmma is not None:
                assert hmma in body, f"{arch} {name}: no {hmma}"
            else:
                assert "HMMA" not in body and "FFMA" in body, f"{arch} {name}: not exact FMAs"


def test_sass_uses_tensor_cores_and_no_local_memory(extension, cuobjdump):
    names = list(KERNELS) + [EXCHANGE]
    code = sass_by_arch(extension, cuobjdump, names)
    for name in names:
        for arch in built_archs():
            body = code.get((arch, name))
            assert body is not None, f"no {arch} SASS for {name}"
            assert not re.search(r"\b(LDL|STL)\b", body), f"{arch} {name}: local loads/stores"
            if name in KERNELS:
                assert KERNELS[name] in body, f"{arch} {name}: no {KERNELS[name]}"
                # The flags: acquire loads and release stores at gpu scope.
                assert "STRONG.GPU" in body, f"{arch} {name}: no gpu-scope flag accesses"


def test_grid_mma_kernels_load_each_b_fragment_once(extension, cuobjdump):
    """slice.cuh mma_mtiles runs all of a grid CTA's m-tiles at once, so a
    B fragment (2 LDS) is loaded once per k-tile and n-tile and feeds MT
    MMAs. Over the whole kernel (fp16, bf16, TF32; both archs) that is 1.16
    HMMA per LDS in the forward (GRU 1.19) and 0.90 in the backward here. The build
    before loaded it once per m-tile pair in the forward (0.80) and once per
    m-tile in the backward (0.48)."""
    code = sass_by_arch(extension, cuobjdump, list(KERNELS))
    for name in KERNELS:
        for arch in built_archs():
            ops = [op for _, op, _ in SASS_INSN.findall(code[(arch, name)])]
            hmma = sum(op.startswith("HMMA") for op in ops)
            lds = sum(op.startswith("LDS") for op in ops)
            print(f"  {arch} {name[22:70]}: HMMA {hmma}, LDS {lds}, HMMA per LDS {hmma / lds:.2f}")
            least = 1.0 if "_fwd_" in name else 0.75
            assert hmma > least * lds, f"{arch} {name}: HMMA per LDS {hmma / lds:.2f}"


def test_exact_fp32_kernels_use_fmas_not_tensor_cores(extension, cuobjdump):
    """TF32 off means no tensor cores: FFMA and no HMMA; the h operands as
    16-byte shared-memory loads (LDS.128), each feeding every m-tile's FFMAs,
    the k halves joined by a shuffle, the flags at gpu scope; no local
    memory."""
    code = sass_by_arch(extension, cuobjdump, FMA_KERNELS)
    for name in FMA_KERNELS:
        for arch in built_archs():
            body = code.get((arch, name))
            assert body is not None, f"no {arch} SASS for {name}"
            assert not re.search(r"\b(LDL|STL)\b", body), f"{arch} {name}: local loads/stores"
            assert "HMMA" not in body, f"{arch} {name}: tensor-core MMA in the exact-fp32 kernel"
            for op in ("FFMA", "LDS.128", "SHFL.DOWN", "STRONG.GPU"):
                assert op in body, f"{arch} {name}: no {op}"
            ffma, lds = body.count("FFMA"), body.count("LDS.128")
            print(f"  {arch} {name[22:60]}: FFMA {ffma}, LDS.128 {lds}, "
                  f"FFMA per LDS.128 {ffma / lds:.2f}")
            # fma_mtiles runs all of a CTA's m-tiles at once: each h load feeds
            # 4 FFMA per m-tile (the kernels overall: forward 10.3-10.5,
            # backward 6.7, its one-m-tile loop at 4 included). With the
            # forward's m-tiles in pairs and the backward's one at a time they
            # were 7.4 and 4.0.
            least = 8 if "_fwd_" in name else 5
            assert ffma > least * lds, f"{arch} {name}: FFMA per LDS.128 {ffma / lds:.2f}"


def test_exact_fp32_fma_loops_are_mostly_ffma(extension, cuobjdump):
    """The exact-fp32 kernels' hottest loop (the innermost with the most
    FFMA: slice.cuh fma_mtiles' n-tile loop at one m-tile count) is at least
    78% FFMA in the forward (81-82% here) and 70% in the backward (73-74%):
    its k-tiles index their W registers statically and end in an early exit.
    The build before ran 32 fragment slots behind mask bits: 71% and 55%,
    and each clear slot cost instructions on top."""
    code = sass_by_arch(extension, cuobjdump, FMA_KERNELS)
    for name in FMA_KERNELS:
        for arch in built_archs():
            ffma = [(sum(op.startswith("FFMA") for op in ops), len(ops))
                    for ops in innermost_loops(code[(arch, name)])]
            n_ffma, n_all = max(ffma, default=(0, 1))
            assert n_ffma, f"{arch} {name}: no FFMA loop"
            share = n_ffma / n_all
            print(f"  {arch} {name[22:60]}: hottest loop {n_all} instructions, "
                  f"{share:.0%} FFMA")
            assert share >= (0.78 if "_fwd_" in name else 0.70), \
                f"{arch} {name}: the FMA loop is {share:.0%} FFMA"


def test_exact_fp32_fma_loops_share_each_h_load_across_the_m_tiles(extension, cuobjdump):
    """slice.cuh fma_mtiles runs all of a CTA's m-tiles at once (4 or 8
    columns a pass), so each LDS.128 of h feeds 4 FFMA per m-tile: one FFMA
    loop per m-tile count the kernel instantiates, with 4 x MT FFMA per
    LDS.128 (forward MT 2-4: 8, 12, 16; backward MT 1-4: 4 to 16), and each
    loop that feeds 8 or more is at least 78% FFMA (80-82% here). The build
    before ran the forward's m-tiles in pairs (a third alone at 4 per load)
    and the backward's one at a time (4 per load, 66-70% FFMA at 2-4 m-tiles)."""
    want = {"fwd": [8, 12, 16], "bwd": [4, 8, 12, 16]}
    code = sass_by_arch(extension, cuobjdump, FMA_KERNELS)
    for name in FMA_KERNELS:
        kind = "fwd" if "_fwd_" in name else "bwd"
        for arch in built_archs():
            loops = []
            for ops in innermost_loops(code[(arch, name)]):
                ffma = sum(op == "FFMA" for op in ops)
                lds = sum(op.startswith("LDS") for op in ops)
                if ffma:
                    loops.append((ffma / max(lds, 1), ffma / len(ops)))
            print(f"  {arch} {name[22:60]}: FFMA per LDS and FFMA share of each FFMA loop: "
                  + ", ".join(f"{r:.1f} {share:.0%}" for r, share in sorted(loops)))
            assert sorted(round(r) for r, _ in loops) == want[kind], (arch, name, loops)
            for r, share in loops:
                assert r < 8 or share >= 0.78, f"{arch} {name}: a loop {share:.0%} FFMA"


def sm(arch: str) -> int:
    return int(arch.split("_")[1])


def cluster_archs() -> list[str]:
    """The build's sm_90+ targets, where the cluster kernels are real (the
    test is skipped without one)."""
    archs = [a for a in built_archs() if sm(a) >= 90]
    if not archs:
        pytest.skip("no sm_90 target in this build")
    return archs


def test_cluster_kernels_exchange_through_dsmem_without_gpu_fences(extension, cuobjdump):
    """sm_90: the tensor-core MMAs, st.async (STAS) into peers' shared memory,
    mbarrier waits and arrivals (SYNCS), and no MEMBAR of gpu or system
    scope and no strong global accesses (no flags) in the whole kernel, so
    none in its step loop. Older targets: a stub without any of it."""
    code = sass_by_arch(extension, cuobjdump, CLUSTER_ALL)
    for name in CLUSTER_ALL:
        for arch in built_archs():
            body = code.get((arch, name))
            assert body is not None, f"no {arch} SASS for {name}"
            assert not re.search(r"\b(LDL|STL)\b", body), f"{arch} {name}: local loads/stores"
            if sm(arch) < 90:
                assert "STAS" not in body and "HMMA" not in body and "SYNCS" not in body, \
                    f"{arch} {name}: expected the trapping stub"
                assert len(re.findall(r"/\*[0-9a-f]{4}\*/", body)) < 64, f"{arch} {name}: not a stub"
                continue
            for op in ("STAS", "SYNCS.PHASECHK.TRANS64", "SYNCS.ARRIVE.TRANS64"):
                assert op in body, f"{arch} {name}: no {op}"
            if name in CLUSTER_KERNELS:
                assert CLUSTER_KERNELS[name] in body, f"{arch} {name}: no {CLUSTER_KERNELS[name]}"
                assert "STAS.128" in body, f"{arch} {name}: no 16-byte st.async path"
            if name in CLUSTER_BWD_KERNELS:
                hmma = CLUSTER_BWD_KERNELS[name]
                assert hmma in body, f"{arch} {name}: no {hmma}"
            membar = GPU_MEMBAR.search(body)
            assert membar is None, f"{arch} {name}: {membar.group(0)} in the cluster kernel"
            assert "STRONG.GPU" not in body, f"{arch} {name}: a gpu-scope flag access"
            print(f"  {arch} {name[:64]}: STAS {body.count('STAS')}, "
                  f"SYNCS {body.count('SYNCS')}, HMMA {body.count('HMMA')}")


def test_cluster_bracket_runs_the_epilogue_before_storing_the_mma_sums(extension, cuobjdump):
    """sm_90: after a bracket's last HMMA the previous slice's epilogue
    (MUFU: the gate activations) comes before the first shared-memory store
    (STS: the sums), so in-order issue does not hold the epilogue behind the
    last MMA's result (cluster_kernel.cuh; the SASS in
    benchmarks/results/cluster-epilogue-order_2026-11-29/). Checked: the
    first MUFU and the first STS between the last HMMA and the next
    BAR.SYNC."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_KERNELS))
    archs = cluster_archs()
    for name in CLUSTER_KERNELS:
        for arch in archs:
            ops = [op for _, op, _ in SASS_INSN.findall(code[(arch, name)])]
            last = max(i for i, op in enumerate(ops) if op.startswith("HMMA"))
            tail = ops[last + 1:]
            bar = next(i for i, op in enumerate(tail) if op.startswith("BAR.SYNC"))
            first = {kind: next((i for i, op in enumerate(tail[:bar]) if op.startswith(kind)), None)
                     for kind in ("MUFU", "STS")}
            print(f"  {arch} {name[:64]}: after the last HMMA, MUFU at {first['MUFU']}, "
                  f"STS at {first['STS']}, BAR.SYNC at {bar}")
            assert first["MUFU"] is not None and first["STS"] is not None, (arch, name, first)
            assert first["MUFU"] < first["STS"], \
                f"{arch} {name}: the sums are stored before the epilogue"


def innermost_loops(body: str) -> list[list[str]]:
    """The opcodes of each innermost loop of a function's SASS: the range of
    a backward branch with no other such range inside it."""
    ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(body)]
    spans = loop_ranges(body)
    inner = [s for s in spans if not any(s[0] <= o[0] and o[1] <= s[1] and o != s for o in spans)]
    return [[op for a, op in ops if lo <= a <= hi] for lo, hi in inner]


def test_cluster_mma_loops_do_no_integer_division(extension, cuobjdump):
    """sm_90: no integer division (its I2F.RP + MUFU.RCP sequence) in the
    cluster kernels' MMA loops (innermost loops with HMMA): W's shared-memory
    pairs are addressed from the pair index and constants (cluster_layout.h
    w_smem_index, pair-major). Warp-major, the register-bound forward
    kernel recomputed a division by the runtime group size for every pair it
    read: 115 instructions for 8 HMMA (group 1), 351 (group 4)."""
    names = list(CLUSTER_KERNELS) + list(CLUSTER_BWD_KERNELS)
    code = sass_by_arch(extension, cuobjdump, names)
    archs = cluster_archs()
    for name in names:
        for arch in archs:
            loops = [ops for ops in innermost_loops(code[(arch, name)])
                     if any(op.startswith("HMMA") for op in ops)]
            assert loops, f"{arch} {name}: no MMA loop found"
            sizes = [(len(ops), sum(op.startswith("HMMA") for op in ops)) for ops in loops]
            print(f"  {arch} {name[24:70]}: MMA loops (instructions, HMMA) {sizes}")
            for ops in loops:
                assert "I2F.RP" not in ops, \
                    f"{arch} {name}: an integer division in an MMA loop of {len(ops)} instructions"


# An integer division by a runtime value: its sequence opens I2F.RP (or
# I2F.U32.RP), then MUFU.RCP; about 35 mostly dependent instructions.
INT_DIVISION = re.compile(r"^I2F(\.U32)?\.RP$")


def loop_ranges(body: str) -> list[tuple[int, int]]:
    """(first, last) address of every backward branch's range."""
    out = []
    for a, op, args in SASS_INSN.findall(body):
        target = re.search(r"0x([0-9a-f]+)", args)
        if op == "BRA" and target and int(target.group(1), 16) < int(a, 16):
            out.append((int(target.group(1), 16), int(a, 16)))
    return out


def smallest_loop_with(body: str, prefixes, around=None) -> tuple[int, int] | None:
    """The shortest backward-branch range holding an instruction of each opcode
    prefix (and, if given, around another range: an outer loop of it)."""
    ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(body)]
    best = None
    for lo, hi in loop_ranges(body):
        if around and not (lo <= around[0] and around[1] <= hi and (lo, hi) != around):
            continue
        inside = [op for a, op in ops if lo <= a <= hi]
        if all(any(op.startswith(p) for op in inside) for p in prefixes):
            if best is None or hi - lo < best[1] - best[0]:
                best = (lo, hi)
    return best


def cluster_loops(body: str) -> dict[str, list[str]]:
    """The cluster forward kernel's bracket loop (the shortest loop holding an
    HMMA, the epilogue's MUFU and the bracket's BAR.SYNC), step loop (the
    shortest one around it holding the mbarrier wait) and the step loop's
    code from its first wait instruction on ("after_wait"), as opcode lists."""
    bracket = smallest_loop_with(body, ("HMMA", "MUFU", "BAR.SYNC"))
    step = smallest_loop_with(body, ("SYNCS.PHASECHK",), around=bracket) if bracket else None
    if not step:
        return {}
    ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(body)]
    wait = min(a for a, op in ops if step[0] <= a <= step[1] and op.startswith("SYNCS.PHASECHK"))
    return {name: [op for a, op in ops if lo <= a <= hi]
            for name, (lo, hi) in (("bracket", bracket), ("step", step),
                                   ("after_wait", (wait, step[1])))}


def test_cluster_step_does_no_integer_division_after_the_wait(extension, cuobjdump):
    """sm_90: no integer division in the cluster forward kernels' step loop
    from the mbarrier wait on: the brackets and the step-end push. Every
    bracket runs the push of group b - 2 before its MMAs
    (cluster_exchange.cuh cluster_push_range: the thread's (peer, row, item)
    by shifts and masks over power-of-two padded counts) and the epilogue
    (its item's slice col / chunk by comparisons); the continuing rows'
    count is taken before the wait. By runtime divisions these put 3
    division sequences (about 35 instructions each, mostly dependent) on
    each bracket's path and one more after each wait: 6 in the bracket
    loop's SASS, 12 from the wait on, 24 in the step loop, which now has
    10, all before the wait (the replica row counts, h0 rows, plain x
    loads)."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_KERNELS))
    archs = cluster_archs()
    for name in CLUSTER_KERNELS:
        for arch in archs:
            loops = cluster_loops(code[(arch, name)])
            assert set(loops) == {"bracket", "step", "after_wait"}, \
                f"{arch} {name}: loops not found"
            div = {k: sum(bool(INT_DIVISION.match(op)) for op in ops) for k, ops in loops.items()}
            print(f"  {arch} {name[24:70]}: bracket loop {len(loops['bracket'])} instructions, "
                  f"{div['bracket']} divisions; step loop {len(loops['step'])}, {div['step']}, "
                  f"{div['after_wait']} after the wait")
            assert div["after_wait"] == 0, \
                f"{arch} {name}: {div['after_wait']} integer divisions after the step's wait"


def test_cluster_bracket_push_set_up_is_short(extension, cuobjdump):
    """sm_90: at most 120 instructions from the cluster forward kernels'
    bracket loop head to its first st.async (STAS): the push of group b - 2's
    set-up and first item, which every warp runs ahead of its MMAs at every
    bracket. The kernel reads the group's PushSpan from shared memory
    (cluster_layout.h push_span, made once per launch); recomputed from the
    partition at every bracket (group_word_begin/end, the aligned middle) it was 163
    to 167 instructions, about 130 of them set-up. It is now 83."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_KERNELS))
    for name in CLUSTER_KERNELS:
        for arch in cluster_archs():
            bracket = cluster_loops(code[(arch, name)]).get("bracket")
            assert bracket, f"{arch} {name}: bracket loop not found"
            to_push = next((i for i, op in enumerate(bracket) if op.startswith("STAS")), None)
            assert to_push is not None, f"{arch} {name}: no st.async in the bracket loop"
            print(f"  {arch} {name[24:70]}: {to_push} instructions before the first STAS")
            assert to_push <= 120, \
                f"{arch} {name}: {to_push} instructions ahead of the bracket's first push"


def cluster_bwd_step_loop(body: str) -> dict[str, list[str]]:
    """The cluster backward kernel's step loop (the shortest backward-branch
    range holding the mbarrier wait, an HMMA and the derivatives' MUFU) and
    its code from the first wait instruction on ("after_wait"), as opcode
    lists."""
    step = smallest_loop_with(body, ("SYNCS.PHASECHK", "HMMA", "MUFU"))
    if not step:
        return {}
    ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(body)]
    wait = min(a for a, op in ops if step[0] <= a <= step[1] and op.startswith("SYNCS.PHASECHK"))
    return {name: [op for a, op in ops if lo <= a <= hi]
            for name, (lo, hi) in (("step", step), ("after_wait", (wait, step[1])))}


def test_cluster_bwd_step_does_no_integer_division_after_the_wait(extension, cuobjdump):
    """sm_90: no integer division in the cluster backward kernels' step loop
    from the mbarrier wait on. Its quotients by J (a reduction item's row,
    the owner of each pushed sum's unit) go through the partition's
    multiply-high divider (divider.h: IMAD.HI, IADD, SHF), and the
    continuing rows' count is taken before the wait. By runtime divisions
    the step loop held 21 to 37 division sequences (m-tile strides 1, 2, 4,
    6), 18 to 34 of them after the wait; it now has 3, the replica row
    counts, all before the wait."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_BWD_KERNELS))
    archs = cluster_archs()
    for name in CLUSTER_BWD_KERNELS:
        for arch in archs:
            loops = cluster_bwd_step_loop(code[(arch, name)])
            assert set(loops) == {"step", "after_wait"}, f"{arch} {name}: step loop not found"
            div = {k: sum(bool(INT_DIVISION.match(op)) for op in ops) for k, ops in loops.items()}
            print(f"  {arch} {name[24:80]}: step loop {len(loops['step'])} instructions, "
                  f"{div['step']} divisions, {div['after_wait']} after the wait")
            assert div["after_wait"] == 0, \
                f"{arch} {name}: {div['after_wait']} integer divisions after the step's wait"


def item_operand_loads(ops: list[str]) -> int:
    """Global loads of reduction operands (not the flags' STRONG ones)."""
    return sum(is_global_load(op) and "STRONG" not in op for op in ops)


def test_cluster_bwd_loads_item_operands_ahead_of_their_reduction(extension, cuobjdump):
    """sm_90: the cluster backward loads a thread's first 4 reduction items'
    operands before the step's wait, and in the reduction loop (after the
    wait) 2 items' operands a round, for later rounds. An item's operands
    are at least 9 loads for LSTM (grad_y, 5 activations, c_prev, dh, dc)
    and 7 for GRU (grad_y, 4 activations, h_prev, dh). Before, 2 items were
    loaded before the wait (20 and 16 loads) and every item past them in
    its own turn of a loop (10 and 8 loads a turn): one dependent global
    round trip each, 2 a step at LSTM fp16 H = 512, B = 256."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_BWD_KERNELS))
    for name in CLUSTER_BWD_KERNELS:
        per_item = 9 if "CellE0E" in name else 7
        for arch in cluster_archs():
            body = code[(arch, name)]
            loops = cluster_bwd_step_loop(body)
            assert loops, f"{arch} {name}: step loop not found"
            before_wait = loops["step"][:len(loops["step"]) - len(loops["after_wait"])]
            reduction = smallest_loop_with(body, ("LDG", "STG"))
            assert reduction, f"{arch} {name}: no reduction loop with loads"
            ops = [op for a, op, _ in SASS_INSN.findall(body)
                   if reduction[0] <= int(a, 16) <= reduction[1]]
            pre, rolling = item_operand_loads(before_wait), item_operand_loads(ops)
            print(f"  {arch} {name[24:80]}: {pre} loads before the wait, {rolling} in the "
                  f"reduction loop")
            assert pre >= 4 * per_item, f"{arch} {name}: {pre} loads before the wait"
            assert rolling >= 2 * per_item, f"{arch} {name}: {rolling} loads a reduction round"


# One SASS instruction with the high 64 bits of its encoding, which hold the
# control bits (bits 105-125 of the instruction: stall 4, yield 1, write
# barrier 3, read barrier 3, wait mask 6, reuse 4).
SASS_CONTROL = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)[^;]*;"
                          r"\s*/\* 0x[0-9a-f]{16} \*/\s*/\* 0x([0-9a-f]{16}) \*/")


def scoreboard_insns(body: str) -> list[tuple[int, str, int, int]]:
    """(address, opcode, write barrier, wait mask) of every instruction: a
    variable-latency instruction's result sets its write barrier (0-5; 7:
    none), and an instruction waits for every barrier in its mask."""
    out = []
    for addr, op, hi in SASS_CONTROL.findall(body):
        c = int(hi, 16) >> 41
        out.append((int(addr, 16), op, (c >> 5) & 7, (c >> 11) & 0x3F))
    return out


def is_global_load(op: str) -> bool:
    """A load through global memory (LDG, or a generic LD), not a cp.async."""
    return (op.startswith("LDG") and not op.startswith(("LDGSTS", "LDGDEPBAR"))) or \
        op == "LD" or op.startswith("LD.")


def global_round_trips(insns) -> int:
    """Dependent global round trips along insns in address order (branches
    fall through, a loop's body once): a global load issued at depth d lands
    at d + 1, a cp.async copy (LDGSTS) too, through the DEPBAR that waits for
    it, and an instruction that waits for a barrier with landed loads on it
    takes the stretch to that depth."""
    landed, copies, depth = {}, 0, 0
    for _, op, wbar, wait in insns:
        for b in range(6):
            if wait >> b & 1 and b in landed:
                depth = max(depth, landed.pop(b))
        if op.startswith("DEPBAR") and copies:
            depth, copies = max(depth, copies), 0
        if op.startswith("LDGSTS"):
            copies = max(copies, depth + 1)
        elif is_global_load(op) and wbar < 6:
            landed[wbar] = max(landed.get(wbar, 0), depth + 1)
    return depth


def is_step_wait(op: str, cluster: bool) -> bool:
    """The step's wait: the mbarrier's PHASECHK (cluster tier), or the L1
    invalidation (CCTL.IVALL) after a flag's acquire load (grid tier)."""
    return op.startswith("SYNCS.PHASECHK") if cluster else op.startswith("CCTL.IVALL")


def persistent_step_loop(body: str, cluster: bool):
    """(instructions of the loop over steps, index of its first wait), or
    None: the smallest loop with the step's wait, an HMMA or FFMA and (grid)
    the publishing release's MEMBAR.ALL.GPU, so not a step's inner loops or
    the flag's spin."""
    insns = scoreboard_insns(body)
    best = None
    for lo, hi in loop_ranges(body):
        ops = [op for a, op, _, _ in insns if lo <= a <= hi]
        if (any(is_step_wait(o, cluster) for o in ops) and any(o.startswith(("HMMA", "FFMA")) for o in ops)
                and (cluster or any(o.startswith("MEMBAR.ALL.GPU") for o in ops))
                and (best is None or hi - lo < best[1] - best[0])):
            best = (lo, hi)
    if best is None:
        return None
    step = [i for i in insns if best[0] <= i[0] <= best[1]]
    return step, next(k for k, i in enumerate(step) if is_step_wait(i[1], cluster))


# The grid kernels' mangled names (sm_80 and sm_90; the FMA kernels apart).
GRID_KERNELS = [
    f"_ZN7rnnfuse7persist{kind}I{elem}LNS0_4CellE{cell}EEEvNS0_{launch}E"
    for kind, launch in (("18persist_fwd_kernel", "16PersistFwdLaunch"),
                         ("18persist_bwd_kernel", "16PersistBwdLaunch"))
    for elem in ("6__half", "13__nv_bfloat16", "f") for cell in (0, 1)
]


def test_step_operands_loaded_before_the_wait_are_not_awaited_before_it(extension, cuobjdump):
    """sm_90: the operands a step loads before its wait (the grid kernels'
    first chunk's epilogue operands, the cluster backward's first 4 items')
    are all in flight at the wait: no instruction before it waits for one
    (at most one such round trip in the grid backward, whose loads wait
    for a scoreboard). Converted from 16 bits where they were loaded, each
    item slot's conversion waited there for its load and the next slot's
    loads went out only then: before the wait, 2 round trips (grid forward
    and backward, 16-bit) and 4 to 7 (cluster backward, 16-bit, counting
    every slot's code)."""
    names = list(GRID_KERNELS) + list(CLUSTER_BWD_KERNELS)
    code = sass_by_arch(extension, cuobjdump, names)
    for name in names:
        cluster = name in CLUSTER_BWD_KERNELS
        for arch in cluster_archs():
            found = persistent_step_loop(code[(arch, name)], cluster)
            assert found, f"{arch} {name}: step loop not found"
            step, wait = found
            trips = global_round_trips(step[:wait])
            print(f"  {arch} {name[24:80]}: {trips} global round trips before the wait")
            allowed = 1 if "persist_bwd_kernel" in name else 0
            assert trips <= allowed, f"{arch} {name}: {trips} global round trips before the step's wait"


def test_cluster_bwd_push_index_math_is_per_unit(extension, cuobjdump):
    """sm_90: at most 20 instructions per st.async (STAS) from the cluster
    backward's last HMMA of a pass to its last push store. A lane's elements
    2h and 2h + 1 share a unit (its owner, remote barrier and receive
    offset): computed once per unit, the push is 14-16 instructions a store;
    computed per store (the full receive index from the partition's fields,
    two mapa) it was about 25."""
    code = sass_by_arch(extension, cuobjdump, list(CLUSTER_BWD_KERNELS))
    for name in CLUSTER_BWD_KERNELS:
        for arch in cluster_archs():
            ops = [op for _, op, _ in SASS_INSN.findall(code[(arch, name)])]
            stores = [i for i, op in enumerate(ops) if op.startswith("STAS")]
            assert stores, f"{arch} {name}: no st.async"
            mmas = [i for i, op in enumerate(ops) if op.startswith("HMMA") and i < stores[0]]
            assert mmas, f"{arch} {name}: no HMMA before the push"
            per_store = (stores[-1] - mmas[-1]) / len(stores)
            print(f"  {arch} {name[24:80]}: {len(stores)} stores, {per_store:.1f} instructions each")
            assert per_store <= 20, f"{arch} {name}: {per_store:.1f} instructions per push store"


def is_exchange_load(op: str) -> bool:
    """A read of exchanged data: ld.global.cg (ptx.cuh ld_cg: LDG...STRONG.GPU)
    or a 16-byte gather's cp.async.cg (cp_async_exchanged16: LDGSTS...BYPASS)."""
    return ((op.startswith("LDG") and "STRONG.GPU" in op) or
            (op.startswith("LDGSTS") and "BYPASS" in op))


def grid_step_loop(body: str) -> tuple[list[str], list[list[str]]]:
    """A grid kernel's step loop (the longest backward-branch range holding
    the gather's exchange loads) and its gather loops (the innermost such
    ranges), as opcode lists."""
    ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(body)]
    spans = [s for s in loop_ranges(body)
             if any(s[0] <= a <= s[1] and is_exchange_load(op) for a, op in ops)]
    if not spans:
        return [], []
    step = max(spans, key=lambda s: s[1] - s[0])
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return ([op for a, op in ops if step[0] <= a <= step[1]],
            [[op for a, op in ops if lo <= a <= hi] for lo, hi in inner])


def test_grid_step_loops_divide_once(extension, cuobjdump):
    """Every grid kernel (and the exchange bench) on every arch: one integer
    division sequence in its step loop, the replica's row count
    (Partition::replica_rows, before the flag wait), and none in the
    gather. The gather splits its index by shift and mask over pieces per
    row padded to a power of two (exchange.cuh gather_rows), the backward's
    K-split maps shift by log2(ksplit) (layout.h BwdPartition), the bench's
    copy-back pads its units. Before: 7 sequences per step loop forward, 20
    backward, 10 in the bench, 2 to 4 of them inside the gather loops."""
    names = list(KERNELS) + FMA_KERNELS + [EXCHANGE]
    code = sass_by_arch(extension, cuobjdump, names)
    assert code, "no grid kernel in the extension's SASS"
    for (arch, name), body in sorted(code.items()):
        step, gathers = grid_step_loop(body)
        assert step and gathers, f"{arch} {name}: no step loop with exchange loads found"
        div = sum(bool(INT_DIVISION.match(op)) for op in step)
        in_gather = sum(bool(INT_DIVISION.match(op)) for g in gathers for op in g)
        print(f"  {arch} {name[24:70]}: step loop {len(step)} instructions, {div} divisions, "
              f"{in_gather} in {len(gathers)} gather loops")
        assert in_gather == 0, f"{arch} {name}: an integer division in a gather loop"
        assert div <= 1, f"{arch} {name}: {div} integer divisions in the step loop"


def test_grid_gathers_keep_a_threads_16_byte_pieces_in_flight(extension, cuobjdump):
    """Every grid kernel (and the exchange bench) on every arch: the 16-byte
    gather (exchange.cuh gather_rows, vec16) copies each piece with
    cp.async.cg (LDGSTS.E.BYPASS.128) and waits once, after its loop
    (DEPBAR), so a thread's pieces are all in flight at once. Before, each
    piece was a 16-byte load into registers (LDG.E.128.STRONG.GPU) then its
    shared store, and the next load was issued after it: p pieces a thread
    cost p L2 round trips (32 a step at LSTM exact fp32 H=512 B=256)."""
    names = list(KERNELS) + FMA_KERNELS + [EXCHANGE]
    code = sass_by_arch(extension, cuobjdump, names)
    assert code, "no grid kernel in the extension's SASS"
    for (arch, name), body in sorted(code.items()):
        step, gathers = grid_step_loop(body)
        copies = [op for op in step if op.startswith("LDGSTS")]
        wide = [op for op in step if op.startswith("LDG.E.128")]
        async_gathers = [g for g in gathers if any(op.startswith("LDGSTS") for op in g)]
        print(f"  {arch} {name[24:70]}: {len(copies)} cp.async, {len(wide)} 16-byte loads "
              f"in the step loop; {len(async_gathers)} cp.async gather loops")
        assert copies, f"{arch} {name}: no cp.async in the step loop"
        assert all(op == "LDGSTS.E.BYPASS.128" for op in copies), (arch, name, set(copies))
        assert not wide, f"{arch} {name}: 16-byte loads through registers in the step loop"
        assert async_gathers, f"{arch} {name}: no gather loop of cp.async"
        assert not any(op.startswith("DEPBAR") for g in async_gathers for op in g), \
            f"{arch} {name}: a wait inside the cp.async gather loop"
        assert any(op.startswith("DEPBAR") for op in step), f"{arch} {name}: no cp.async wait"


def elementwise_gather_loads(body: str) -> list[int]:
    """Per element-wise gather loop of a grid kernel's SASS (a gather loop
    with no cp.async that stores to shared memory; the flag waits store
    nothing): its exchanged loads before its first shared store."""
    _, gathers = grid_step_loop(body)
    out = []
    for g in gathers:
        if any(op.startswith("LDGSTS") for op in g) or not any(op.startswith("STS") for op in g):
            continue
        first_store = next(i for i, op in enumerate(g) if op.startswith("STS"))
        out.append(sum(is_exchange_load(op) for op in g[:first_store]))
    return out


def test_grid_elementwise_gathers_load_a_batch_before_storing(extension, cuobjdump):
    """Every grid kernel (and the exchange bench) on every arch: the
    element-wise gather (exchange.cuh gather_rows without vec16: odd H in
    fp16/bf16, unaligned strides) loads kGatherBatch = 4 elements (ld_cg)
    before it stores the first to shared memory. Before, each element's load
    was followed by its store: a thread's elements cost one dependent L2
    round trip each."""
    names = list(KERNELS) + FMA_KERNELS + [EXCHANGE]
    code = sass_by_arch(extension, cuobjdump, names)
    assert code, "no grid kernel in the extension's SASS"
    for (arch, name), body in sorted(code.items()):
        loops = elementwise_gather_loads(body)
        print(f"  {arch} {name[24:70]}: loads before the first store {loops}")
        assert loops, f"{arch} {name}: no element-wise gather loop"
        assert min(loops) >= 4, f"{arch} {name}: the element-wise gather stores after {loops} loads"


def longest_exchanged_load_run(step: list[str]) -> int:
    """The longest run of 32-bit exchanged loads (ld_cg: LDG.E.STRONG.GPU)
    with no FADD, FFMA or shared store among them, in a step loop's
    opcodes."""
    best = run = 0
    for op in step:
        if op == "LDG.E.STRONG.GPU":
            run += 1
            best = max(best, run)
        elif op.startswith(("FADD", "FFMA", "STS")):
            run = 0
    return best


def test_grid_bwd_loads_every_parts_sums_before_adding_them(extension, cuobjdump):
    """The grid backward with K split (kernel_bwd.cuh): a thread's loads of
    the other parts' partial sums (ld_cg, LDG.E.STRONG.GPU: kItemSlots x
    kMaxKSplit = 8, predicated) are all issued before the first add, in one
    run with no FADD, FFMA or shared store among them (the 3 flag waits'
    loads before the barrier join it: 11). With the add after each load in
    turn (the parts' sums in order 0..S-1), an item waited S - 1 dependent L2
    round trips, and the longest such run was 4. (A shared store ends a run
    so that the element-wise gather's 4-byte loads, each stored to the h
    buffer, do not count.)"""
    names = [n for n in list(KERNELS) + FMA_KERNELS if "persist_bwd" in n]
    code = sass_by_arch(extension, cuobjdump, names)
    assert code, "no grid backward kernel in the extension's SASS"
    for (arch, name), body in sorted(code.items()):
        step, _ = grid_step_loop(body)
        best = longest_exchanged_load_run(step)
        print(f"  {arch} {name[24:70]}: {best} exchanged 32-bit loads before an add")
        assert best >= 8, f"{arch} {name}: the partial sums' loads wait on adds ({best} in a row)"


# One SASS instruction's guard (empty, or its predicate) and opcode.
SASS_GUARDED = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
SEGMENT_END = ("BRA", "BSSY", "BSYNC", "EXIT")


def branch_segments(body: str) -> list[list[tuple[bool, str]]]:
    """A function's SASS cut after every branch and reconvergence instruction:
    the straight-line segments, as (guarded, opcode) per instruction."""
    out, seg = [], []
    for guard, op in SASS_GUARDED.findall(body):
        seg.append((bool(guard), op))
        if op.startswith(SEGMENT_END):
            out.append(seg)
            seg = []
    return out + [seg] if seg else out


def longest_run(segs, keep) -> int:
    """The most consecutive segments for which keep(segment) holds."""
    best = cur = 0
    for s in segs:
        cur = cur + 1 if keep(s) else 0
        best = max(best, cur)
    return best


def test_grid_mma_loops_issue_only_the_chunks_k_tiles_and_n_tiles(extension, cuobjdump):
    """fp16/bf16 grid kernels (slice.cuh mma_mtiles, instantiated per m-tile
    count and for one n-tile or a full chunk); measured on the forward's 2
    m-tiles and the backward's 1. One n-tile: the warp's k-tiles run as a
    chain of straight-line segments, each the forward's 2 HMMA (the
    backward's 1), none predicated, in at most 10 instructions (7-8
    here), at least 7 in a row (a group's first also zeroes its sums). A
    full chunk: a k-tile's 4 n-tiles x those HMMA in at most 24 (19-23; the
    median, as a group's first k-tile also sets the n-tile predicates). The
    build before tested a mask bit per (m-tile, k-tile) fragment slot (about
    4 instructions where it was clear): no chain longer than 4 (sm_80's
    n-tile branches), and on sm_90 all 4 n-tile slots issued predicated,
    37 instructions for the pair's 8 HMMA whatever the chunk's n-tiles.
    TF32 (printed, not gated) compiles a branch per n-tile both ways."""
    archs = built_archs()
    code = sass_by_arch(extension, cuobjdump, list(KERNELS))
    for name in KERNELS:
        nm = 2 if "_fwd_" in name else 1
        for arch in archs:
            segs = branch_segments(code[(arch, name)])
            chain = longest_run(segs, lambda s: len(s) <= 10 and [
                g for g, op in s if op.startswith("HMMA")] == [False] * nm)
            full = [len(s) for s in segs if sum(op.startswith("HMMA") for _, op in s) == 4 * nm]
            print(f"  {arch} {name[24:60]}: one-n-tile chain of {chain} k-tiles, full-chunk "
                  f"k-tiles of {sorted(set(full))} instructions")
            if KERNELS[name].endswith("TF32"):
                continue
            assert chain >= 7, f"{arch} {name}: one-n-tile k-tiles chained {chain} at most"
            assert full and statistics.median_low(full) <= 24, \
                f"{arch} {name}: full-chunk k-tiles of {sorted(set(full))} instructions"


def test_persistent_sources_include_no_aten():
    """The kernel translation units stay ATen-free (fast standalone compiles)."""
    root = Path(__file__).resolve().parents[1] / "csrc" / "cuda" / "persistent"
    for f in list(root.glob("*.cu")) + list(root.glob("*.cuh")) + [root / "args.h"]:
        text = f.read_text()
        assert not re.search(r"#include\s*<(ATen|c10|torch)/", text), f.name


# CUDA's load intrinsics. cuda_fp16/bf16's __ldcg(const __half*) and kin are
# plain (non-volatile) asm, which the compiler may move above the flag
# acquire and barrier that order a read of exchanged data: the kernels read
# such data only through ptx.cuh's ld_cg overloads (volatile asm throughout).
LOAD_INTRINSIC = re.compile(r"\b__ld(g|cg|ca|cs|lu|cv)\s*\(")


def raw_load_calls(name: str, text: str) -> list[str]:
    """The lines of one persistent source that call a load intrinsic directly
    (ptx.cuh, the wrappers' home, is exempt)."""
    if name == "ptx.cuh":
        return []
    return [line.strip() for line in text.splitlines() if LOAD_INTRINSIC.search(line)]


def test_exchanged_data_is_read_through_volatile_l2_loads():
    """No persistent source but ptx.cuh calls __ldcg & co. (the check flags
    the 16-bit gather as it was before ld_cg); ptx.cuh's ld_cg overloads
    reach only the volatile intrinsics (uint4, float, unsigned short)."""
    before = "      hbuf[n * pitch + k] = src != nullptr ? __ldcg(src + k) : Elem<E>::from_float(0.0f);"
    assert raw_load_calls("exchange.cuh", before) == [before.strip()]
    assert raw_load_calls("exchange.cuh", before.replace("__ldcg(", "ld_cg(")) == []
    root = Path(__file__).resolve().parents[1] / "csrc" / "cuda" / "persistent"
    for f in sorted(list(root.glob("*.cu")) + list(root.glob("*.cuh")) + [root / "args.h"]):
        assert raw_load_calls(f.name, f.read_text()) == [], f.name
    ptx = (root / "ptx.cuh").read_text()
    calls = re.findall(r"__ldcg\((.*?)\)\s*[;)]", ptx)
    assert len(calls) == 4, calls
    for arg in calls:
        assert arg == "p" or "const unsigned short*" in arg, arg
    for overload in ("uint4 ld_cg(const uint4* p)", "float ld_cg(const float* p)",
                     "__half ld_cg(const __half* p)", "__nv_bfloat16 ld_cg(const __nv_bfloat16* p)"):
        assert overload in ptx, overload
