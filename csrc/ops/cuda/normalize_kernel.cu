// normalize_frames on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6):
// launches on the caller's stream, instantiated for float, half and bfloat16 outputs.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/normalize.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_normalize_frames(const uint8_t* images, const float* scale, const float* shift, scalar_t* out,
                                    int64_t pixels, int64_t channels, cudaStream_t stream) {
  with_normalize_frames(images, scale, shift, out, pixels, channels, LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_NORMALIZE(T)                                                                 \
  template cudaError_t launch_normalize_frames<T>(const uint8_t*, const float*, const float*, T*, int64_t, \
                                                  int64_t, cudaStream_t);

SEGBLOCKS_INSTANTIATE_NORMALIZE(float)
SEGBLOCKS_INSTANTIATE_NORMALIZE(__half)
SEGBLOCKS_INSTANTIATE_NORMALIZE(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_NORMALIZE

}  // namespace cuda
}  // namespace segblocks
