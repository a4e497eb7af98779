// cell_complexity on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6):
// launches on the caller's stream, instantiated for float, double, half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/complexity.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_cell_complexity(const scalar_t* x, Strides4 strides, float* out, int64_t n, int64_t h,
                                   int64_t w, int64_t channels, int64_t factor, float floor, bool index32,
                                   cudaStream_t stream) {
  with_cell_complexity(x, strides, out, n, h, w, channels, factor, floor, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_cell_complexity_frames(const uint8_t* images, const float* scale, const float* shift, float* out,
                                          int64_t n, int64_t h, int64_t w, int64_t factor, float floor, bool index32,
                                          cudaStream_t stream) {
  with_cell_complexity_frames<scalar_t>(images, scale, shift, out, n, h, w, factor, floor, index32,
                                        LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_COMPLEXITY(T)                                                             \
  template cudaError_t launch_cell_complexity<T>(const T*, Strides4, float*, int64_t, int64_t, int64_t, \
                                                 int64_t, int64_t, float, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_COMPLEXITY(float)
SEGBLOCKS_INSTANTIATE_COMPLEXITY(double)
SEGBLOCKS_INSTANTIATE_COMPLEXITY(__half)
SEGBLOCKS_INSTANTIATE_COMPLEXITY(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_COMPLEXITY

// normalize_frames' dtypes
#define SEGBLOCKS_INSTANTIATE_COMPLEXITY_FRAMES(T)                                                                 \
  template cudaError_t launch_cell_complexity_frames<T>(const uint8_t*, const float*, const float*, float*, int64_t, \
                                                        int64_t, int64_t, int64_t, float, bool, cudaStream_t);
SEGBLOCKS_INSTANTIATE_COMPLEXITY_FRAMES(float)
SEGBLOCKS_INSTANTIATE_COMPLEXITY_FRAMES(__half)
SEGBLOCKS_INSTANTIATE_COMPLEXITY_FRAMES(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_COMPLEXITY_FRAMES

}  // namespace cuda
}  // namespace segblocks
