// The CPU kernels for any CPU: ATen's generic Vectorized, no instruction-set
// flags. Also what runs under ATEN_CPU_CAPABILITY=default.
#define CPU_CAPABILITY DEFAULT
#include "kernels_impl.h"

RNNFUSE_DEFINE_CPU_KERNELS(kernels_default, "DEFAULT")
