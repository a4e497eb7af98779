// CUTLASS convolution, tile 128 x 128 x 64, 4 stages, persistent cooperative with the
// stream-K scheduler; see conv_cutlass_persistent.cuh.
#include "conv_cutlass_persistent.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_CUTLASS_CONV(128x128x64_s4_streamk, ConvCutlassPersistentConfig<128, 128, 64, 4, 2>)
}  // namespace cuda
}  // namespace segblocks
