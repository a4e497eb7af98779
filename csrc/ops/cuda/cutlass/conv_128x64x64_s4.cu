// CUTLASS convolution, tile 128 x 64 x 64, 4 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128, 64, 64, 4)
}  // namespace cuda
}  // namespace segblocks
