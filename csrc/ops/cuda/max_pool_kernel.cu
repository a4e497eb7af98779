// max_pool_units and max_pool_dense on CUDA (torch-free: compiles with plain nvcc, see
// DESIGN.md section 6): launches on the caller's stream, instantiated for float, double,
// half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/max_pool.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_max_pool_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                  Strides4 lowres_strides, scalar_t* out, Strides4 out_strides, const int64_t* hr_pos,
                                  const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& grid,
                                  int64_t kernel, int64_t stride, int64_t padding, bool quartered,
                                  bool channels_last, bool index32, cudaStream_t stream) {
  with_max_pool_units(highres, highres_strides, lowres, lowres_strides, out, out_strides, hr_pos, lr_pos, block_map,
                      grid, kernel, stride, padding, quartered, channels_last, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_max_pool_dense(const scalar_t* x, Strides4 strides, scalar_t* out, int64_t n,
                                  int64_t channels, int64_t h, int64_t w, int64_t kernel, int64_t stride,
                                  int64_t padding, bool channels_last, bool index32, cudaStream_t stream) {
  with_max_pool_dense(x, strides, out, n, channels, h, w, kernel, stride, padding, channels_last, index32,
                      LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_MAX_POOL(T)                                                               \
  template cudaError_t launch_max_pool_units<T>(const T*, Strides4, const T*, Strides4, T*, Strides4,         \
                                                const int64_t*, const int64_t*, const int32_t*,             \
                                                const BlockGrid&, int64_t,                                   \
                                                int64_t, int64_t, bool, bool, bool, cudaStream_t);          \
  template cudaError_t launch_max_pool_dense<T>(const T*, Strides4, T*, int64_t, int64_t, int64_t, int64_t, \
                                                int64_t, int64_t, int64_t, bool, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_MAX_POOL(float)
SEGBLOCKS_INSTANTIATE_MAX_POOL(double)
SEGBLOCKS_INSTANTIATE_MAX_POOL(__half)
SEGBLOCKS_INSTANTIATE_MAX_POOL(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_MAX_POOL

}  // namespace cuda
}  // namespace segblocks
