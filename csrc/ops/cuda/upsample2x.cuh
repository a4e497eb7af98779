// Bilinear x2 (+ skip) on the GPU: Params for the element functions of ops/upsample2x.h
// (dense: one thread per output element, or per 16-byte pack of channels in channels_last;
// units: per patch of 1, 2 or 4 outputs and pack; grid-stride loop). The launchers are in
// upsample2x_kernel.cu; test/cuda_kernels_host.cu runs the same element functions on the CPU.
#pragma once

#include <initializer_list>

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
#include "ops/upsample2x.h"

namespace segblocks {
namespace cuda {

// The outputs a thread of upsample2x_units computes (upsample2x_units_patch_element): one,
// a pair in a row, or a 2x2 quad; kAuto picks by the units' side (upsample2x_units_patch). Forced
// through SEGBLOCKS_UPSAMPLE_UNITS_PATCH (upsample2x_launch.cpp) for A/B measurements, and by
// the host harness, which tests each on every geometry.
enum class UpsamplePatch : int { kAuto = 0, kOne = 1, kPair = 2, kQuad = 4 };

// Measured on the H100 (node_profile.py, RN18 at 40%, each patch forced; benchmarks/results/
// steps/59-patch-*): units of 2 px (no window inside its unit): one 5.0, pair 6.5, quad 7.7 us
// at batch 1; units of 4 px: quad 9.0 / 26.4 us at batch 1 / 4 against 9.8 / 30.5 (one) and
// 9.8 / 30.6 (pair); units of 8 px: quad 23.9 / 97.7 against 27.4 / 109.7 and 27.6 / 113.3.
// The best patch followed the units' side at both batch sizes. Quads need 80 registers
// (sm_90, half, 16-byte packs; 3 blocks of 256 threads per SM), pairs 72, one output 64 (4).
constexpr int kOneOutputMinBlocks = 4;  // the register bound of the one-output element

inline UpsamplePatch upsample2x_units_patch(int64_t u, UpsamplePatch forced) {
  if (forced != UpsamplePatch::kAuto) return forced;
  return u < 4 ? UpsamplePatch::kOne : UpsamplePatch::kQuad;
}

// out / out_strides: the output, or the interior of padded tiles (the pixel (0, 0) of tile 0's
// interior and the padded tensor's strides); post_scale / post_shift (or nullptr): the
// epilogue relu(v * scale + shift).
template <typename scalar_t, typename Run>
void with_upsample2x_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                           Strides4 lowres_strides, const scalar_t* skip, Strides4 skip_strides, scalar_t* out,
                           Strides4 out_strides, const scalar_t* post_scale, const scalar_t* post_shift,
                           const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                           const BlockGrid& g, bool quartered, bool channels_last, bool index32, Run&& run,
                           UpsamplePatch patch = UpsamplePatch::kAuto) {
  const int64_t side = g.hr_side;  // the output units: u = h/2 upsampled x2
  const int64_t total = (4 * g.num_highres + g.num_lowres) * g.channels * side * side;
  if (total == 0) return;
  // the epilogue's scale and shift are read in packs too (PostPack)
  const Strides4 vector{0, 1, 0, 0};
  const std::initializer_list<PackCheck> tensors{{highres, highres_strides, g.num_highres == 0},
                                                 {lowres, lowres_strides, g.num_lowres == 0},
                                                 {skip, skip_strides, skip == nullptr},
                                                 {out, out_strides, false},
                                                 {post_scale, vector, post_scale == nullptr},
                                                 {post_shift, vector, post_shift == nullptr}};
  with_pack_layout_and_index<scalar_t>(channels_last, g.channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = Upsample2xUnitsParams<scalar_t, D>;
    const Params prm{{highres, highres_strides, quartered ? g.hr_side / 2 : 0, lowres, lowres_strides, hr_pos, lr_pos,
                      block_map},
                     skip, skip_strides, out, out_strides, {post_scale, post_shift}, GridIndexer<D>(g),
                     D(g.channels / kPack), D(side), 4 * g.num_highres};
    constexpr bool kCl = decltype(layout)::value;
    const int64_t packs = total / kPack;  // output pixels x channel packs
    switch (upsample2x_units_patch(g.hr_side / 2, patch)) {
      case UpsamplePatch::kQuad:
        run.template operator()<Params, &upsample2x_units_patch_element<CudaCvt<scalar_t>, kCl, D, kPack, 2, 2>, 3>(
            prm, packs / 4);
        break;
      case UpsamplePatch::kPair:
        run.template operator()<Params, &upsample2x_units_patch_element<CudaCvt<scalar_t>, kCl, D, kPack, 1, 2>, 3>(
            prm, packs / 2);
        break;
      default:
        run.template operator()<Params, &upsample2x_units_patch_element<CudaCvt<scalar_t>, kCl, D, kPack, 1, 1>,
                                kOneOutputMinBlocks>(prm, packs);
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
