// The fused segmentation head on the GPU: Params for the element functions of
// ops/upsample_argmax.h (one thread per output pixel, grid-stride loop). The launchers are
// in upsample_argmax_kernel.cu; test/cuda_kernels_host.cu runs the same element functions
// on the CPU.
#pragma once

#include <cmath>

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/cuda_scalar.cuh"
#include "ops/upsample_argmax.h"

namespace segblocks {
namespace cuda {

template <typename T>
struct CudaCvt {
  using scalar_t = T;
  using acc_t = acc_type<T>;
  __host__ __device__ __forceinline__ static acc_t to_acc(T v) { return cuda::to_acc(v); }
  __host__ __device__ __forceinline__ static T round(acc_t v) { return from_acc<T>(v); }
  __host__ __device__ __forceinline__ static acc_t infinity() { return static_cast<acc_t>(INFINITY); }
};

template <typename scalar_t, typename Run>
void with_upsample_argmax(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                          Strides4 lowres_strides, uint8_t* labels, const int32_t* block_map,
                          const BlockGrid& g, int64_t factor, bool index32, Run&& run) {
  const int64_t bf = g.hr_side * factor;
  const int64_t total = g.grid_n * g.grid_h * bf * g.grid_w * bf;
  if (total == 0) return;
  using acc_t = acc_type<scalar_t>;
  const acc_t scale = static_cast<acc_t>(1.0 / static_cast<double>(factor));
  with_layout_and_index(false, index32, [&](auto, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = UpsampleArgmaxParams<scalar_t, acc_t, D>;
    const Params prm{highres, highres_strides, lowres, lowres_strides, labels, block_map,
                     GridIndexer<D>(g), D(bf), D(g.grid_w * bf), D(g.grid_h * bf), factor, g.channels,
                     scale};
    run.template operator()<Params, &upsample_argmax_element<CudaCvt<scalar_t>, D>>(prm, total);
  });
}

template <typename scalar_t, typename Run>
void with_upsample_argmax_units(const scalar_t* units, Strides4 strides, uint8_t* labels,
                                const int64_t* hr_pos, const int64_t* lr_pos, const BlockGrid& g,
                                int64_t factor, bool index32, Run&& run) {
  const int64_t uf = g.hr_side / 2 * factor;
  const int64_t total = (4 * g.num_highres + g.num_lowres) * uf * uf;
  if (total == 0) return;
  using acc_t = acc_type<scalar_t>;
  with_layout_and_index(false, index32, [&](auto, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = UpsampleArgmaxUnitsParams<scalar_t, acc_t, D>;
    const Params prm{units, strides, labels, hr_pos, lr_pos, GridIndexer<D>(g), D(uf * uf), D(uf),
                     4 * g.num_highres, factor, g.channels,
                     static_cast<acc_t>(1.0 / static_cast<double>(factor))};
    run.template operator()<Params, &upsample_argmax_units_element<CudaCvt<scalar_t>, D>>(prm, total);
  });
}

template <typename scalar_t, typename Run>
void with_upsample_argmax_dense(const scalar_t* logits, Strides4 strides, uint8_t* labels, int64_t n,
                                int64_t channels, int64_t h, int64_t w, int64_t factor, bool index32,
                                Run&& run) {
  const int64_t total = n * h * factor * w * factor;
  if (total == 0) return;
  using acc_t = acc_type<scalar_t>;
  with_layout_and_index(false, index32, [&](auto, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = UpsampleArgmaxDenseParams<scalar_t, acc_t, D>;
    const Params prm{logits, strides, labels, D(w * factor), D(h * factor), h, w, channels,
                     static_cast<acc_t>(h) / static_cast<acc_t>(h * factor),
                     static_cast<acc_t>(w) / static_cast<acc_t>(w * factor)};
    run.template operator()<Params, &upsample_argmax_dense_element<CudaCvt<scalar_t>, D>>(prm, total);
  });
}

}  // namespace cuda
}  // namespace segblocks
