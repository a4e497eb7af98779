// upsample_argmax and upsample_argmax_dense on CUDA (torch-free: compiles with plain nvcc,
// see DESIGN.md section 6): launches on the caller's stream, instantiated for float,
// double, half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/upsample_argmax.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_upsample_argmax(const scalar_t* highres, Strides4 highres_strides,
                                   const scalar_t* lowres, Strides4 lowres_strides, uint8_t* labels,
                                   const int32_t* block_map, const BlockGrid& grid, int64_t factor,
                                   bool index32, cudaStream_t stream) {
  with_upsample_argmax(highres, highres_strides, lowres, lowres_strides, labels, block_map, grid,
                       factor, index32, LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_upsample_argmax_units(const scalar_t* units, Strides4 strides, uint8_t* labels,
                                         const int64_t* hr_pos, const int64_t* lr_pos,
                                         const BlockGrid& grid, int64_t factor, bool index32,
                                         cudaStream_t stream) {
  with_upsample_argmax_units(units, strides, labels, hr_pos, lr_pos, grid, factor, index32,
                             LaunchOnStream{stream});
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_upsample_argmax_dense(const scalar_t* logits, Strides4 strides, uint8_t* labels,
                                         int64_t n, int64_t channels, int64_t h, int64_t w,
                                         int64_t factor, bool index32, cudaStream_t stream) {
  with_upsample_argmax_dense(logits, strides, labels, n, channels, h, w, factor, index32,
                             LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX(T)                                                  \
  template cudaError_t launch_upsample_argmax<T>(const T*, Strides4, const T*, Strides4, uint8_t*, \
                                                 const int32_t*, const BlockGrid&, int64_t, bool,  \
                                                 cudaStream_t);                                    \
  template cudaError_t launch_upsample_argmax_dense<T>(const T*, Strides4, uint8_t*, int64_t,      \
                                                       int64_t, int64_t, int64_t, int64_t, bool,   \
                                                       cudaStream_t);    \
  template cudaError_t launch_upsample_argmax_units<T>(const T*, Strides4, uint8_t*, const int64_t*, \
                                                       const int64_t*, const BlockGrid&, int64_t,  \
                                                       bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX(float)
SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX(double)
SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX(__half)
SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_UPSAMPLE_ARGMAX

}  // namespace cuda
}  // namespace segblocks
