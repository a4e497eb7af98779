// cell_complexity on the GPU: Params for the element function of ops/complexity.h (one
// thread per 4x4 cell, grid-stride loop). The launcher is in complexity_kernel.cu;
// test/cuda_kernels_host.cu runs the same element function on the CPU.
#pragma once

#include "ops/complexity.h"
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt

namespace segblocks {
namespace cuda {

// cell_complexity of x; or, with `frames` (prm.images etc. set), cell_complexity_frames of
// uint8 frames [n, h, w, 3], 3 channels normalised to scalar_t as they are read
template <typename scalar_t, bool kFrames = false, typename Run>
void with_cell_complexity_params(CellComplexityParams<scalar_t, PlainDivider<int64_t>> base, int64_t n, int64_t h,
                                 int64_t w, bool index32, Run&& run) {
  const int64_t ch = h / base.factor, cw = w / base.factor;
  const int64_t total = n * ch * cw;
  if (total == 0) return;
  with_layout_and_index(false, index32, [&](auto, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = CellComplexityParams<scalar_t, D>;
    const Params prm{base.x, base.strides, base.out, D(cw), D(ch), base.channels, base.factor, base.floor,
                     base.images, base.scale, base.shift, h, w};
    run.template operator()<Params, &cell_complexity_element<CudaCvt<scalar_t>, D, kFrames>>(prm, total);
  });
}

template <typename scalar_t, typename Run>
void with_cell_complexity(const scalar_t* x, Strides4 strides, float* out, int64_t n, int64_t h, int64_t w,
                          int64_t channels, int64_t factor, float floor, bool index32, Run&& run) {
  with_cell_complexity_params<scalar_t>({x, strides, out, {}, {}, channels, factor, floor}, n, h, w, index32,
                                        std::forward<Run>(run));
}

template <typename scalar_t, typename Run>
void with_cell_complexity_frames(const uint8_t* images, const float* scale, const float* shift, float* out,
                                 int64_t n, int64_t h, int64_t w, int64_t factor, float floor, bool index32,
                                 Run&& run) {
  with_cell_complexity_params<scalar_t, true>(
      {nullptr, Strides4{0, 0, 0, 0}, out, {}, {}, 3, factor, floor, images, scale, shift, h, w}, n, h, w, index32,
      std::forward<Run>(run));
}

}  // namespace cuda
}  // namespace segblocks
