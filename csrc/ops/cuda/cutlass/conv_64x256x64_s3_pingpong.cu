// CUTLASS convolution, tile 64 x 256 x 64, 3 stages, persistent ping-pong; see
// conv_cutlass_persistent.cuh.
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(64x256x64_s3_pingpong, ConvCutlassPersistentConfig<64, 256, 64, 3, 1>)
}  // namespace cuda
}  // namespace segblocks
