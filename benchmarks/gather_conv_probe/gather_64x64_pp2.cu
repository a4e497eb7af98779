// The halo-gathering convolution, tile 64 x 64 x 64, 2 producer warp group(s), ping-pong true,
// cooperative false (gather_conv.cuh).
#include "gather_conv.cuh"

namespace gather_probe {
int gather_conv_64x64_pp2(const Problem& p, cudaStream_t stream) {
  return run<GatherConv<64, 64, 64, 2, true, false>>(p, stream);
}
}  // namespace gather_probe
