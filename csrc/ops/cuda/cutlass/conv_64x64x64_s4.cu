// CUTLASS convolution, tile 64 x 64 x 64, 4 stages (0: as many as fit), one thread block per tile;
// see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x64x64_s4, ConvCutlassConfig<64, 64, 64, 4>)
}  // namespace cuda
}  // namespace segblocks
