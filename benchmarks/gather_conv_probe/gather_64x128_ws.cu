// The halo-gathering convolution, tile 64 x 128 x 64, cutlass::gemm::KernelCpAsyncWarpSpecialized (gather_conv.cuh).
#include "gather_conv.cuh"

namespace gather_probe {
int gather_conv_64x128_ws(const Problem& p, cudaStream_t stream) {
  return run<GatherConv<64, 128, 64, cutlass::gemm::KernelCpAsyncWarpSpecialized>>(p, stream);
}
}  // namespace gather_probe
