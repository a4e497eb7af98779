// Bilinear x2 (+ skip) on the GPU: Params for the element functions of ops/upsample2x.h
// (one thread per output element, or per 16-byte pack of channels in channels_last, of the
// dense op; per 2x2 output quad and pack of the units op; grid-stride loop). The launchers are in upsample2x_kernel.cu; test/cuda_kernels_host.cu
// runs the same element functions on the CPU.
#pragma once

#include <initializer_list>

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
#include "ops/upsample2x.h"

namespace segblocks {
namespace cuda {

// A thread computes a 2x2 output quad from 9 input packs: unbounded, 108 registers (sm_90,
// half, 16-byte packs) allow 2 blocks of 256 threads per SM; at most 80 allow 3, with 68
// bytes spilled (see MinBlocksPerSM).
// The units' side (u, input) from which a thread computes two outputs at once
// (with_upsample2x_units' pairs_min_side: the host harness tests both elements on every side).
constexpr int64_t kUpsamplePairsMinSide = 4;

template <typename scalar_t, typename D>
struct MinBlocksPerSM<Upsample2xUnitsParams<scalar_t, D>> {
  static constexpr int value = 3;
};

// out / out_strides: the output, or the interior of padded tiles (the pixel (0, 0) of tile 0's
// interior and the padded tensor's strides); post_scale / post_shift (or nullptr): the
// epilogue relu(v * scale + shift).
template <typename scalar_t, typename Run>
void with_upsample2x_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                           Strides4 lowres_strides, const scalar_t* skip, Strides4 skip_strides, scalar_t* out,
                           Strides4 out_strides, const scalar_t* post_scale, const scalar_t* post_shift,
                           const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                           const BlockGrid& g, bool quartered, bool channels_last, bool index32, Run&& run,
                           int64_t pairs_min_side = kUpsamplePairsMinSide) {
  const int64_t side = g.hr_side;  // the output units: u = h/2 upsampled x2
  const int64_t total = (4 * g.num_highres + g.num_lowres) * g.channels * side * side;
  if (total == 0) return;
  const std::initializer_list<PackCheck> tensors{{highres, highres_strides, g.num_highres == 0},
                                                 {lowres, lowres_strides, g.num_lowres == 0},
                                                 {skip, skip_strides, skip == nullptr},
                                                 {out, out_strides, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, g.channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = Upsample2xUnitsParams<scalar_t, D>;
    const Params prm{{highres, highres_strides, quartered ? g.hr_side / 2 : 0, lowres, lowres_strides, hr_pos, lr_pos,
                      block_map},
                     skip, skip_strides, out, out_strides, {post_scale, post_shift}, GridIndexer<D>(g),
                     D(g.channels / kPack), D(side), 4 * g.num_highres};
    constexpr bool kCl = decltype(layout)::value;
    if (g.hr_side / 2 >= pairs_min_side) {
      // one thread per output pair and channel pack: 6 input packs for 2 outputs
      run.template operator()<Params, &upsample2x_units_quad_element<CudaCvt<scalar_t>, kCl, D, kPack, 1>>(
          prm, total / (2 * kPack));
    } else {
      // units of 1-2 px: no window lies inside its unit, and quads or pairs would leave the
      // GPU with too few threads (node_profile.py, RN18 batch 1: 9.0 against 13.0 us for
      // the decoder's first upsampling, units of 2 px, in quads)
      run.template operator()<Params, &upsample2x_units_element<CudaCvt<scalar_t>, kCl, D, kPack>>(prm,
                                                                                                 total / kPack);
    }
  });
}

template <typename scalar_t, typename Run>
void with_upsample2x_dense(const scalar_t* x, Strides4 strides, const scalar_t* skip, Strides4 skip_strides,
                           scalar_t* out, int64_t n, int64_t channels, int64_t h, int64_t w, bool channels_last,
                           bool index32, Run&& run) {
  const int64_t total = n * channels * 4 * h * w;
  if (total == 0) return;
  const std::initializer_list<PackCheck> tensors{
      {x, strides, false}, {skip, skip_strides, skip == nullptr}, {out, Strides4{0, 1, 0, 0}, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = Upsample2xDenseParams<scalar_t, D>;
    const Params prm{x, strides, skip, skip_strides, out, D(channels / kPack), D(2 * w), D(2 * h), h, w};
    run.template operator()<Params, &upsample2x_dense_element<CudaCvt<scalar_t>, decltype(layout)::value, D, kPack>>(
        prm, total / kPack);
  });
}

}  // namespace cuda
}  // namespace segblocks
