// CUTLASS convolution, tile 64 x 128 x 64, as many stages as fit, persistent ping-pong, in
// clusters of 2 x 1 thread blocks (each weight tile multicast to the two blocks of a cluster);
// see conv_cutlass_persistent.cuh.
// the GEMM kernel's griddepcontrol: launched programmatically (pdl.cuh)
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x128x64_s0_c2x1_pingpong, ConvCutlassPersistentConfig<64, 128, 64, 0, 1, 2, 1>)
}  // namespace cuda
}  // namespace segblocks
