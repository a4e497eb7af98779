// CUTLASS convolution, tile 128 x 64 x 64, 4 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {

int launch_conv_cutlass_128_64_64_4(const ConvCutlassProblem& p, cudaStream_t stream) {
  return launch_conv_cutlass<ConvCutlassConfig<128, 64, 64, 4>>(p, stream);
}

}  // namespace cuda
}  // namespace segblocks
