// The halo-gathering convolution, tile 128 x 64 x 64, 2 producer warp group(s), ping-pong false,
// cooperative false (gather_conv.cuh).
#include "gather_conv.cuh"

namespace gather_probe {
int gather_conv_128x64_ws2(const Problem& p, cudaStream_t stream) {
  return run<GatherConv<128, 64, 64, 2, false, false>>(p, stream);
}
}  // namespace gather_probe
