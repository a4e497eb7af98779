// upsample2x_units and upsample2x_dense on CUDA (torch-free: compiles with plain nvcc, see
// DESIGN.md section 6): launches on the caller's stream, instantiated for float, double,
// half and bfloat16.
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/upsample2x.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t>
cudaError_t launch_upsample2x_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                    Strides4 lowres_strides, const scalar_t* skip, Strides4 skip_strides,
                                    scalar_t* out, Strides4 out_strides, const scalar_t* post_scale,
                                    const scalar_t* post_shift, const int64_t* hr_pos, const int64_t* lr_pos,
                                    const int32_t* block_map, const BlockGrid& grid, bool quartered,
                                    bool channels_last, bool index32, int patch, cudaStream_t stream) {
  with_upsample2x_units(highres, highres_strides, lowres, lowres_strides, skip, skip_strides, out, out_strides,
                        post_scale, post_shift, hr_pos, lr_pos, block_map, grid, quartered, channels_last, index32,
                        LaunchOnStream{stream}, static_cast<UpsamplePatch>(patch));
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_upsample2x_dense(const scalar_t* x, Strides4 strides, const scalar_t* skip,
                                    Strides4 skip_strides, scalar_t* out, int64_t n, int64_t channels, int64_t h,
                                    int64_t w, bool channels_last, bool index32, cudaStream_t stream) {
  with_upsample2x_dense(x, strides, skip, skip_strides, out, n, channels, h, w, channels_last, index32,
                        LaunchOnStream{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_UPSAMPLE2X(T)                                                                  \
  template cudaError_t launch_upsample2x_units<T>(const T*, Strides4, const T*, Strides4, const T*, Strides4, \
                                                  T*, Strides4, const T*, const T*, const int64_t*,           \
                                                  const int64_t*, const int32_t*,                             \
                                                  const BlockGrid&, bool, bool, bool, int, cudaStream_t);     \
  template cudaError_t launch_upsample2x_dense<T>(const T*, Strides4, const T*, Strides4, T*, int64_t,        \
                                                  int64_t, int64_t, int64_t, bool, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_UPSAMPLE2X(float)
SEGBLOCKS_INSTANTIATE_UPSAMPLE2X(double)
SEGBLOCKS_INSTANTIATE_UPSAMPLE2X(__half)
SEGBLOCKS_INSTANTIATE_UPSAMPLE2X(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_UPSAMPLE2X

}  // namespace cuda
}  // namespace segblocks
