// scale_shift_relu on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6):
// launches on the caller's stream, instantiated for float, half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/scale_shift_relu.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_scale_shift_relu(const scalar_t* x, scalar_t* out, const scalar_t* scale, const scalar_t* shift,
                                    int64_t elements, int64_t channels, cudaStream_t stream) {
  with_scale_shift_relu(x, out, scale, shift, elements, channels, LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_SCALE_SHIFT_RELU(T)                                                            \
  template cudaError_t launch_scale_shift_relu<T>(const T*, T*, const T*, const T*, int64_t, int64_t, \
                                                  cudaStream_t);

SEGBLOCKS_INSTANTIATE_SCALE_SHIFT_RELU(float)
SEGBLOCKS_INSTANTIATE_SCALE_SHIFT_RELU(__half)
SEGBLOCKS_INSTANTIATE_SCALE_SHIFT_RELU(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_SCALE_SHIFT_RELU

}  // namespace cuda
}  // namespace segblocks
