// CUTLASS convolution, tile 256 x 64 x 64, as many stages as fit, persistent cooperative (two
// consumer warp groups on one tile, whole K loops); see conv_cutlass_persistent.cuh.
// the GEMM kernel's griddepcontrol: launched programmatically (pdl.cuh)
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(256x64x64_s0_coop, ConvCutlassPersistentConfig<256, 64, 64, 0, 3>)
}  // namespace cuda
}  // namespace segblocks
