// combine and combine_backward on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md
// section 6). The kernels live in block_copy.cuh, shared with split: combine is
// blocks_to_dense with nearest upsampling of the low-res blocks (scale 1), its backward is
// dense_to_blocks summing each 2x2 group (scale 1).
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/block_ops_cuda.h"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_combine(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                           Strides4 lowres_strides, scalar_t* dense, const int64_t* hr_pos,
                           const int64_t* lr_pos, const BlockGrid& grid, bool channels_last,
                           bool index32, cudaStream_t stream, int64_t hr_unit) {
  with_blocks_to_dense(highres, highres_strides, lowres, lowres_strides, dense, hr_pos, lr_pos, grid,
                       /*lowres_scale=*/1.0, channels_last, index32, LaunchOnStream{stream}, hr_unit);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_combine_backward(const scalar_t* grad, Strides4 grad_strides,
                                    scalar_t* grad_highres, scalar_t* grad_lowres,
                                    const int64_t* hr_pos, const int64_t* lr_pos,
                                    const BlockGrid& grid, bool channels_last, bool index32,
                                    cudaStream_t stream) {
  with_dense_to_blocks(grad, grad_strides, grad_highres, grad_lowres, hr_pos, lr_pos, grid,
                       /*lowres_scale=*/1.0, channels_last, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_COMBINE(T)                                                        \
  template cudaError_t launch_combine<T>(const T*, Strides4, const T*, Strides4, T*,            \
                                         const int64_t*, const int64_t*, const BlockGrid&, bool, \
                                         bool, cudaStream_t, int64_t);                          \
  template cudaError_t launch_combine_backward<T>(const T*, Strides4, T*, T*, const int64_t*,   \
                                                  const int64_t*, const BlockGrid&, bool, bool, \
                                                  cudaStream_t);

SEGBLOCKS_INSTANTIATE_COMBINE(float)
SEGBLOCKS_INSTANTIATE_COMBINE(double)
SEGBLOCKS_INSTANTIATE_COMBINE(__half)
SEGBLOCKS_INSTANTIATE_COMBINE(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_COMBINE

}  // namespace cuda
}  // namespace segblocks
