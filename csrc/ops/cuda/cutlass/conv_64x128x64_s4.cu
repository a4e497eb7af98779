// CUTLASS convolution, tile 64 x 128 x 64, 4 stages (0: as many as fit), one thread block per tile;
// see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x128x64_s4, ConvCutlassConfig<64, 128, 64, 4>)
}  // namespace cuda
}  // namespace segblocks
