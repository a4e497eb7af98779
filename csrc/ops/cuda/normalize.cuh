// normalize_frames on the GPU: Params for the element function of ops/normalize.h (one
// thread per pixel, grid-stride loop). The launcher is in normalize_kernel.cu;
// test/cuda_kernels_host.cu runs the same element function on the CPU.
#pragma once

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
#include "ops/normalize.h"

namespace segblocks {
namespace cuda {

// `out` is [pixels, channels] contiguous; 4 channels of a 2-byte type go as one 8-byte pack
// (the output's base is at least 8-byte aligned: a fresh allocation).
template <typename scalar_t, typename Run>
void with_normalize_frames(const uint8_t* images, const float* scale, const float* shift, scalar_t* out,
                           int64_t pixels, int64_t channels, Run&& run) {
  if (pixels == 0) return;
  using Params = NormalizeParams<scalar_t>;
  const Params prm{images, scale, shift, out, channels};
  if (channels == 4 && sizeof(scalar_t) == 2 && reinterpret_cast<uintptr_t>(out) % 8 == 0) {
    run.template operator()<Params, &normalize_element<CudaCvt<scalar_t>, true>>(prm, pixels);
  } else {
    run.template operator()<Params, &normalize_element<CudaCvt<scalar_t>, false>>(prm, pixels);
  }
}

}  // namespace cuda
}  // namespace segblocks
