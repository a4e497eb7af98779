// CUTLASS convolution, tile 128 x 128 x 64, 3 stages (0: as many as fit), one thread block per tile;
// see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128x128x64_s3, ConvCutlassConfig<128, 128, 64, 3>)
}  // namespace cuda
}  // namespace segblocks
