// The halo-gathering convolution, tile 128 x 128 x 64, cutlass::gemm::KernelCpAsyncWarpSpecializedCooperative (gather_conv.cuh).
#include "gather_conv.cuh"

namespace gather_probe {
int gather_conv_128x128_coop(const Problem& p, cudaStream_t stream) {
  return run<GatherConv<128, 128, 64, cutlass::gemm::KernelCpAsyncWarpSpecializedCooperative>>(p, stream);
}
}  // namespace gather_probe
