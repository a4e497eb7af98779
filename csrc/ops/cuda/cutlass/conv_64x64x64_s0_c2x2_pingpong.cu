// CUTLASS convolution, tile 64 x 64 x 64, as many stages as fit, persistent ping-pong, in
// clusters of 2 x 2 thread blocks (each weight tile multicast to the two blocks of a cluster
// column, each im2col tile to the two of a row); see conv_cutlass_persistent.cuh.
// the GEMM kernel's griddepcontrol: launched programmatically (pdl.cuh)
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x64x64_s0_c2x2_pingpong, ConvCutlassPersistentConfig<64, 64, 64, 0, 1, 2, 2>)
}  // namespace cuda
}  // namespace segblocks
