// CUTLASS convolution, tile 64 x 128 x 64, 0 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {

int launch_conv_cutlass_64_128_64_0(const ConvCutlassProblem& p, cudaStream_t stream) {
  return launch_conv_cutlass<ConvCutlassConfig<64, 128, 64, 0>>(p, stream);
}

}  // namespace cuda
}  // namespace segblocks
