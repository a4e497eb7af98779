// cell_complexity on the GPU: Params for the element function of ops/complexity.h (one
// thread per 4x4 cell, grid-stride loop). The launcher is in complexity_kernel.cu;
// test/cuda_kernels_host.cu runs the same element function on the CPU.
#pragma once

#include "ops/complexity.h"
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt

namespace segblocks {
namespace cuda {

template <typename scalar_t, typename Run>
void with_cell_complexity(const scalar_t* x, Strides4 strides, float* out, int64_t n, int64_t h, int64_t w,
                          int64_t channels, int64_t factor, float floor, bool index32, Run&& run) {
  const int64_t ch = h / factor, cw = w / factor;
  const int64_t total = n * ch * cw;
  if (total == 0) return;
  with_layout_and_index(false, index32, [&](auto, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = CellComplexityParams<scalar_t, D>;
    const Params prm{x, strides, out, D(cw), D(ch), channels, factor, floor};
    run.template operator()<Params, &cell_complexity_element<CudaCvt<scalar_t>, D>>(prm, total);
  });
}

}  // namespace cuda
}  // namespace segblocks
