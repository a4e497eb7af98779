// block_pad and block_pad_backward on CUDA (torch-free: compiles with plain nvcc, see
// DESIGN.md section 6). The kernels are in block_pad.cuh; this file launches them on the
// caller's stream and instantiates the launchers for float, double, half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/block_pad.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_block_pad(const scalar_t* highres, Strides4 highres_strides,
                             const scalar_t* lowres, Strides4 lowres_strides,
                             scalar_t* highres_padded, scalar_t* lowres_padded,
                             const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                             const BlockGrid& grid, int64_t padding, bool replicate, double value,
                             bool channels_last, bool index32, int64_t hr_unit_in,
                             int64_t hr_unit_out, const scalar_t* pre_scale, const scalar_t* pre_shift,
                             cudaStream_t stream) {
  with_block_pad(highres, highres_strides, lowres, lowres_strides, highres_padded, lowres_padded,
                 hr_pos, lr_pos, block_map, grid, padding, replicate, value, channels_last, index32,
                 hr_unit_in, hr_unit_out, pre_scale, pre_shift, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_block_pad_backward(const scalar_t* grad_highres_padded,
                                      Strides4 grad_highres_padded_strides,
                                      const scalar_t* grad_lowres_padded,
                                      Strides4 grad_lowres_padded_strides, scalar_t* grad_highres,
                                      scalar_t* grad_lowres, const int64_t* hr_pos,
                                      const int64_t* lr_pos, const int32_t* block_map,
                                      const BlockGrid& grid, int64_t padding, bool replicate,
                                      bool channels_last, bool index32, cudaStream_t stream) {
  with_block_pad_backward(grad_highres_padded, grad_highres_padded_strides, grad_lowres_padded,
                          grad_lowres_padded_strides, grad_highres, grad_lowres, hr_pos, lr_pos,
                          block_map, grid, padding, replicate, channels_last, index32,
                          LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_block_pad_ring(scalar_t* padded, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const int32_t* block_map, const BlockGrid& grid, int64_t padding, bool replicate,
                                  double value, bool channels_last, bool index32, cudaStream_t stream) {
  with_block_pad_ring(padded, hr_pos, lr_pos, block_map, grid, padding, replicate, value, channels_last, index32,
                      LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_BLOCK_PAD(T)                                                        \
  template cudaError_t launch_block_pad<T>(const T*, Strides4, const T*, Strides4, T*, T*,        \
                                           const int64_t*, const int64_t*, const int32_t*,        \
                                           const BlockGrid&, int64_t, bool, double, bool, bool,   \
                                           int64_t, int64_t, const T*, const T*, cudaStream_t);   \
  template cudaError_t launch_block_pad_backward<T>(const T*, Strides4, const T*, Strides4, T*,   \
                                                    T*, const int64_t*, const int64_t*,           \
                                                    const int32_t*, const BlockGrid&, int64_t,    \
                                                    bool, bool, bool, cudaStream_t);     \
  template cudaError_t launch_block_pad_ring<T>(T*, const int64_t*, const int64_t*, const int32_t*, \
                                                const BlockGrid&, int64_t, bool, double, bool, bool, \
                                                cudaStream_t);

SEGBLOCKS_INSTANTIATE_BLOCK_PAD(float)
SEGBLOCKS_INSTANTIATE_BLOCK_PAD(double)
SEGBLOCKS_INSTANTIATE_BLOCK_PAD(__half)
SEGBLOCKS_INSTANTIATE_BLOCK_PAD(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_BLOCK_PAD

}  // namespace cuda
}  // namespace segblocks
