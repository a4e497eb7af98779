// Max pooling without indices on the GPU: Params for the element functions of
// ops/max_pool.h (one thread per output element, or per pack of 16 bytes of channels in
// channels_last; grid-stride loop; consecutive threads take consecutive channels). The
// launchers are in max_pool_kernel.cu; test/cuda_kernels_host.cu runs the same element
// functions on the CPU.
#pragma once

#include <initializer_list>

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
#include "ops/max_pool.h"

namespace segblocks {
namespace cuda {

// Not register-bounded: with the windows inside their unit read from one base and the maxima
// taken in the dtype, the units kernel needs 40 registers (6 blocks of 256 threads per SM) on
// its own (sm_90, half, 16-byte packs; bounded to 40 it spilled 8 bytes, to 32 (8 blocks per
// SM) 56: 34.3 against 31.2 us at batch 1, benchmarks/results/steps/59-*).

template <typename scalar_t, typename Run>
void with_max_pool_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                         Strides4 lowres_strides, scalar_t* out, Strides4 out_strides, const int64_t* hr_pos,
                         const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& g, int64_t kernel,
                         int64_t stride, int64_t padding, bool quartered, bool channels_last, bool index32,
                         Run&& run) {
  const int64_t uo = (g.hr_side / 2 + 2 * padding - kernel) / stride + 1;
  const int64_t total = (4 * g.num_highres + g.num_lowres) * g.channels * uo * uo;
  if (total == 0) return;
  const std::initializer_list<PackCheck> tensors{{highres, highres_strides, g.num_highres == 0},
                                                 {lowres, lowres_strides, g.num_lowres == 0},
                                                 {out, out_strides, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, g.channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = MaxPoolUnitsParams<scalar_t, D>;
    const Params prm{{highres, highres_strides, quartered ? g.hr_side / 2 : 0, lowres, lowres_strides, hr_pos, lr_pos,
                      block_map},
                     out, out_strides, GridIndexer<D>(g), D(g.channels / kPack), D(uo), 4 * g.num_highres,
                     kernel, stride, padding};
    constexpr bool kCl = decltype(layout)::value;
    // the output packed in its order (the op's own tensor), or a view (padded tiles' interiors)
    if (!same_strides(out_strides, contiguous_strides(g.channels, uo, uo, kCl))) {
      run.template operator()<Params, &max_pool_units_element<CudaCvt<scalar_t>, kCl, D, kPack, true>>(prm,
                                                                                                     total / kPack);
    } else {
      run.template operator()<Params, &max_pool_units_element<CudaCvt<scalar_t>, kCl, D, kPack, false>>(prm,
                                                                                                      total / kPack);
    }
  });
}

template <typename scalar_t, typename Run>
void with_max_pool_dense(const scalar_t* x, Strides4 strides, scalar_t* out, int64_t n, int64_t channels,
                         int64_t h, int64_t w, int64_t kernel, int64_t stride, int64_t padding,
                         bool channels_last, bool index32, Run&& run) {
  const int64_t ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1;
  const int64_t total = n * channels * ho * wo;
  if (total == 0) return;
  const std::initializer_list<PackCheck> tensors{{x, strides, false}, {out, Strides4{0, 1, 0, 0}, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = MaxPoolDenseParams<scalar_t, D>;
    const Params prm{x, strides, out, D(channels / kPack), D(wo), D(ho), h, w, kernel, stride, padding};
    run.template operator()<Params, &max_pool_dense_element<CudaCvt<scalar_t>, decltype(layout)::value, D, kPack>>(
        prm, total / kPack);
  });
}

}  // namespace cuda
}  // namespace segblocks
