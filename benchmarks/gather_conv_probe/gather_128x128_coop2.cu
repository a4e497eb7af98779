// The halo-gathering convolution, tile 128 x 128 x 64, 2 producer warp group(s), ping-pong false,
// cooperative true (gather_conv.cuh).
#include "gather_conv.cuh"

namespace gather_probe {
int gather_conv_128x128_coop2(const Problem& p, cudaStream_t stream) {
  return run<GatherConv<128, 128, 64, 2, false, true>>(p, stream);
}
}  // namespace gather_probe
