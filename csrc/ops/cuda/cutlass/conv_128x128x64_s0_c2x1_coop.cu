// CUTLASS convolution, tile 128 x 128 x 64, as many stages as fit, persistent cooperative, in
// clusters of 2 x 1 thread blocks (each weight tile multicast to the two blocks of a cluster);
// see conv_cutlass_persistent.cuh.
// the GEMM kernel's griddepcontrol: launched programmatically (pdl.cuh)
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128x128x64_s0_c2x1_coop, ConvCutlassPersistentConfig<128, 128, 64, 0, 3, 2, 1>)
}  // namespace cuda
}  // namespace segblocks
