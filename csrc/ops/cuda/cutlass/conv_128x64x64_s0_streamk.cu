// CUTLASS convolution, tile 128 x 64 x 64, as many stages as fit, persistent cooperative with the
// stream-K scheduler; see conv_cutlass_persistent.cuh.
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128x64x64_s0_streamk, ConvCutlassPersistentConfig<128, 64, 64, 0, 2>)
}  // namespace cuda
}  // namespace segblocks
