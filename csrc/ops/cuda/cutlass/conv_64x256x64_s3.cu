// CUTLASS convolution, tile 64 x 256 x 64, 3 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64, 256, 64, 3)
}  // namespace cuda
}  // namespace segblocks
