// CUTLASS convolution, tile 64 x 256 x 64, 3 stages (0: auto); see conv_cutlass.cuh.
#include "conv_cutlass.cuh"

namespace segblocks {
namespace cuda {

int launch_conv_cutlass_64_256_64_3(const ConvCutlassProblem& p, cudaStream_t stream) {
  return launch_conv_cutlass<ConvCutlassConfig<64, 256, 64, 3>>(p, stream);
}

}  // namespace cuda
}  // namespace segblocks
