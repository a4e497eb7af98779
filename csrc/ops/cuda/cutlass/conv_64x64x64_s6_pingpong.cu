// CUTLASS convolution, tile 64 x 64 x 64, 6 stages, persistent ping-pong; see
// conv_cutlass_persistent.cuh.
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x64x64_s6_pingpong, ConvCutlassPersistentConfig<64, 64, 64, 6, 1>)
}  // namespace cuda
}  // namespace segblocks
