// split and split_backward on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md
// section 6). The kernels live in block_copy.cuh, shared with combine: split is
// dense_to_blocks with the low-res 2x2 average (scale 1/4), its backward is blocks_to_dense
// with the low-res gradient spread over the 2x2 group (scale 1/4).
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/block_ops_cuda.h"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_split(const scalar_t* x, Strides4 x_strides, scalar_t* highres, scalar_t* lowres,
                         const int64_t* hr_pos, const int64_t* lr_pos, const BlockGrid& grid,
                         bool channels_last, bool index32, cudaStream_t stream) {
  with_dense_to_blocks(x, x_strides, highres, lowres, hr_pos, lr_pos, grid, /*lowres_scale=*/0.25,
                       channels_last, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_split_padded(const scalar_t* x, Strides4 x_strides, scalar_t* highres, scalar_t* lowres,
                                const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                                const BlockGrid& grid, int64_t padding, bool channels_last, bool index32,
                                cudaStream_t stream) {
  with_split_padded(x, x_strides, highres, lowres, hr_pos, lr_pos, block_map, grid, padding, channels_last, index32,
                    LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_split_padded_frames(const uint8_t* images, const float* scale, const float* shift, int64_t height,
                                       int64_t width, scalar_t* highres, scalar_t* lowres, const int64_t* hr_pos,
                                       const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& grid,
                                       int64_t padding, bool index32, cudaStream_t stream) {
  with_split_padded_frames(images, scale, shift, height, width, highres, lowres, hr_pos, lr_pos, block_map, grid,
                           padding, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_split_units(const scalar_t* x, Strides4 x_strides, scalar_t* units, const int64_t* hr_pos,
                               const int64_t* lr_pos, const BlockGrid& grid, bool channels_last, bool index32,
                               cudaStream_t stream) {
  with_dense_to_units(x, x_strides, units, hr_pos, lr_pos, grid, channels_last, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_split_backward(const scalar_t* grad_highres, Strides4 grad_highres_strides,
                                  const scalar_t* grad_lowres, Strides4 grad_lowres_strides,
                                  scalar_t* grad_x, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const BlockGrid& grid, bool channels_last, bool index32,
                                  cudaStream_t stream) {
  with_blocks_to_dense(grad_highres, grad_highres_strides, grad_lowres, grad_lowres_strides, grad_x,
                       hr_pos, lr_pos, grid, /*lowres_scale=*/0.25, channels_last, index32,
                       LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_SPLIT(T)                                                           \
  template cudaError_t launch_split<T>(const T*, Strides4, T*, T*, const int64_t*, const int64_t*, \
                                       const BlockGrid&, bool, bool, cudaStream_t);              \
  template cudaError_t launch_split_padded<T>(const T*, Strides4, T*, T*, const int64_t*,          \
                                              const int64_t*, const int32_t*, const BlockGrid&,    \
                                              int64_t, bool, bool, cudaStream_t);                  \
  template cudaError_t launch_split_units<T>(const T*, Strides4, T*, const int64_t*, const int64_t*, \
                                             const BlockGrid&, bool, bool, cudaStream_t);           \
  template cudaError_t launch_split_backward<T>(const T*, Strides4, const T*, Strides4, T*,      \
                                                const int64_t*, const int64_t*, const BlockGrid&, \
                                                bool, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_SPLIT(float)
SEGBLOCKS_INSTANTIATE_SPLIT(double)
SEGBLOCKS_INSTANTIATE_SPLIT(__half)
SEGBLOCKS_INSTANTIATE_SPLIT(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_SPLIT

// normalize_frames' dtypes only
#define SEGBLOCKS_INSTANTIATE_SPLIT_FRAMES(T)                                                               \
  template cudaError_t launch_split_padded_frames<T>(const uint8_t*, const float*, const float*, int64_t, \
                                                     int64_t, T*, T*, const int64_t*, const int64_t*,      \
                                                     const int32_t*, const BlockGrid&, int64_t, bool,      \
                                                     cudaStream_t);

SEGBLOCKS_INSTANTIATE_SPLIT_FRAMES(float)
SEGBLOCKS_INSTANTIATE_SPLIT_FRAMES(__half)
SEGBLOCKS_INSTANTIATE_SPLIT_FRAMES(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_SPLIT_FRAMES

}  // namespace cuda
}  // namespace segblocks
