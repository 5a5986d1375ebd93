# Negative controls: each a temporary edit of the grid tier's kernel source
# (kernel.cuh, kernel_bwd.cuh, exchange.cuh), compiled into the SIMT object
# only (simt_run.cpp). Each breaks the gpu-scope release/acquire protocol
# in a way sequentially consistent fibers may or may not show (run_controls.sh
# runs each with the global-memory checks off, then on).
MUTATIONS = {
    # The step flag stored relaxed: y is never published.
    "fwd_relaxed_release": ("kernel.cuh",
        "    if (tid == 0) st_release_gpu(a.flags + q, publish_value(st.step));\n",
        "    if (tid == 0) *reinterpret_cast<volatile unsigned*>(a.flags + q) = publish_value(st.step);\n"),
    # Thread 0 releases the step after its own last chunk's items, before
    # the barrier that waits for the other threads' (their y stores unpublished).
    "fwd_release_before_last_barrier": ("kernel.cuh", [
        ("            }\n          }\n          __syncthreads();\n        }\n      }\n    }\n"
         "    if (tid == 0) st_release_gpu(a.flags + q, publish_value(st.step));\n",
         "            }\n          }\n"
         "          if (tid == 0 && g0 + q0 + n_rows >= rows) st_release_gpu(a.flags + q, publish_value(st.step));\n"
         "          __syncthreads();\n        }\n      }\n    }\n"
         "    if (tid == 0 && rows == 0) st_release_gpu(a.flags + q, publish_value(st.step));\n")]),
    # The flag polled with plain volatile loads: no acquire.
    "relaxed_poll": ("exchange.cuh", [
        ("  if (ld_acquire_gpu(flag) >= want) return;\n",
         "  if (*reinterpret_cast<const volatile unsigned*>(flag) >= want) return;\n"),
        ("    if (ld_acquire_gpu(flag) >= want) break;\n",
         "    if (*reinterpret_cast<const volatile unsigned*>(flag) >= want) break;\n")]),
    # The waiting threads' acquires not shared with the CTA before the gather.
    "no_barrier_after_flag_waits": ("exchange.cuh",
        "  if (tid < a.part.ctas) wait_flag(a.flags + a.part.cta_index(r, tid), want, a.watchdog_ns);\n  __syncthreads();\n",
        "  if (tid < a.part.ctas) wait_flag(a.flags + a.part.cta_index(r, tid), want, a.watchdog_ns);\n"),
    # y stored plainly: the checks must notice stores they cannot see.
    "fwd_plain_y_store": ("kernel.cuh",
        "st_exchanged(y + row * a.ld_y + j, X::from_float(h));",
        "y[row * a.ld_y + j] = X::from_float(h);"),
    # Backward: the step flag stored relaxed (dgates unpublished).
    "bwd_relaxed_release": ("kernel_bwd.cuh",
        "    if (tid == 0) st_release_gpu(a.flags + q, publish_value(st.step));\n",
        "    if (tid == 0) *reinterpret_cast<volatile unsigned*>(a.flags + q) = publish_value(st.step);\n"),
    # Backward K split: the partial-sum flag stored relaxed.
    "bwd_relaxed_partial_release": ("kernel_bwd.cuh",
        "            if (tid == 0) st_release_gpu(a.pflags + q, partial_publish_value(chunk_no));\n",
        "            if (tid == 0) *reinterpret_cast<volatile unsigned*>(a.pflags + q) = partial_publish_value(chunk_no);\n"),
    # Backward K split: no barrier between the partial sums' stores and their release.
    "bwd_partials_released_before_barrier": ("kernel_bwd.cuh",
        "            }\n            __syncthreads();\n            if (tid == 0) st_release_gpu(a.pflags + q, partial_publish_value(chunk_no));\n",
        "            }\n            if (tid == 0) st_release_gpu(a.pflags + q, partial_publish_value(chunk_no));\n"),
    # Backward K split: the other parts' sums read without the barrier after their waits.
    "bwd_no_barrier_after_partial_waits": ("kernel_bwd.cuh",
        "                        partial_publish_value(chunk_no), a.watchdog_ns);\n            }\n            __syncthreads();\n",
        "                        partial_publish_value(chunk_no), a.watchdog_ns);\n            }\n"),
    # Backward K split: one partial-sum slot instead of two, so a part
    # overwrites its sums while another part may still read the last chunk's
    # (write after read).
    "bwd_one_partial_slot": ("kernel_bwd.cuh",
        "const int slot = partial_slot(chunk_no);", "const int slot = 0;"),
}
