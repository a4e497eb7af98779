// CUTLASS convolution, tile 64 x 64 x 64, as many stages as fit, persistent ping-pong; see
// conv_cutlass_persistent.cuh.
// the GEMM kernel's griddepcontrol: launched programmatically (pdl.cuh)
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x64x64_s0_pingpong, ConvCutlassPersistentConfig<64, 64, 64, 0, 1>)
}  // namespace cuda
}  // namespace segblocks
