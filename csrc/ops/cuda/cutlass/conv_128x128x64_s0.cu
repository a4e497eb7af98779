// CUTLASS convolution, tile 128 x 128 x 64, 0 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128, 128, 64, 0)
}  // namespace cuda
}  // namespace segblocks
