// Max pooling without indices, fused with BlockPad on units, and its dense twin.
//
//   max_pool_units(highres, lowres, hr_pos, lr_pos, block_map, k, s, p, quartered)
//       -> [4Nh + Nl, C, uo, uo],  uo = (h/2 + 2p - k) / s + 1
//   equals  F.max_pool2d(block_pad_units(highres, lowres, ..., p, "constant", -inf,
//                                        quartered), k, s)
//   without writing the padded tiles: each output reads its k x k window through BlockPad's
//   rules (pad_source in block_indexing.h), so a halo pixel is looked up, never stored.
//
//   max_pool_dense(x [N, C, H, W], k, s, p) -> [N, C, Ho, Wo] = F.max_pool2d(x, k, s, p)
//
// On the GPU, channels_last maps whose channel count is a multiple of 16 bytes' worth run
// one thread per output pixel and pack of channels (MaxOfPack: one aligned load per window
// pixel), like BlockPad's packed path.
//
// PyTorch's CUDA max pooling always writes int64 indices next to its output (8 bytes per
// output value: for SwiftNet's stem pooling, more memory than the output itself); these
// do not. NaN propagates as in torch (a NaN in the window is the maximum).
//
// Torch-free and CUDA-free (like upsample_argmax.h): the CPU kernels and the CUDA kernels
// run these element functions, with the conversions supplied by `Cvt`.
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

template <typename acc_t>
SEGBLOCKS_HOST_DEVICE void max_update(acc_t& best, acc_t v) {
  if (v > best || v != v) best = v;
}

// The running maxima of kPack consecutive channels (kPack = 1: one element). With kPack > 1
// the tensors are channels_last and every pixel's pack is one aligned load (ops.Pack).
template <typename Cvt, int kPack>
struct MaxOfPack {
  using scalar_t = typename Cvt::scalar_t;
  using acc_t = typename Cvt::acc_t;
  acc_t best[kPack];
  SEGBLOCKS_HOST_DEVICE MaxOfPack() {
SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) best[l] = -Cvt::infinity();
  }
  SEGBLOCKS_HOST_DEVICE void add(const scalar_t* p) {
    const auto x = load_pack<scalar_t, kPack>(p);
SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) max_update(best[l], Cvt::to_acc(x.v[l]));
  }
  // BlockPad's 2x2 mean of high-res pixels (row by row), rounded to the dtype as its output
  // would be, in avg_pool2d's summation order
  SEGBLOCKS_HOST_DEVICE void add_mean(const scalar_t* p00, const scalar_t* p01, const scalar_t* p10,
                                      const scalar_t* p11) {
    const auto a = load_pack<scalar_t, kPack>(p00), b = load_pack<scalar_t, kPack>(p01);
    const auto c = load_pack<scalar_t, kPack>(p10), d = load_pack<scalar_t, kPack>(p11);
SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      const acc_t sum = Cvt::to_acc(a.v[l]) + Cvt::to_acc(b.v[l]) + Cvt::to_acc(c.v[l]) + Cvt::to_acc(d.v[l]);
      max_update(best[l], Cvt::to_acc(Cvt::round(sum * static_cast<acc_t>(0.25))));
    }
  }
  SEGBLOCKS_HOST_DEVICE void store(scalar_t* out) const {
    Pack<scalar_t, kPack> o;
SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) o.v[l] = Cvt::round(best[l]);
    *reinterpret_cast<Pack<scalar_t, kPack>*>(out) = o;
  }
};

template <typename scalar_t, typename D>
struct MaxPoolUnitsParams {
  const scalar_t* highres;
  Strides4 highres_strides;
  int64_t hr_unit_in;  // 0: highres is [Nh, C, h, h]; h/2: it is stored as units
  const scalar_t* lowres;
  Strides4 lowres_strides;
  scalar_t* out;  // [4Nh + Nl, C, uo, uo], contiguous in NCHW or NHWC order
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
  GridIndexer<D> grid;
  D channels_div;  // divides by C / kPack
  D out_side_div;  // divides by uo
  int64_t num_hr_units;  // 4 Nh
  int64_t kernel, stride, padding;
};

// Output element (kPack = 1) or channel pack `linear` of max_pool_units.
template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1>
SEGBLOCKS_HOST_DEVICE void max_pool_units_element(
    const MaxPoolUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  const HrStridesT<index_t> hs(prm.highres_strides, prm.hr_unit_in);
  const StridesT<index_t> ls(prm.lowres_strides);
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div, prm.out_side_div);
  const index_t ch = el.c * kPack;
  const bool lowres = el.k >= static_cast<index_t>(prm.num_hr_units);
  const index_t k = lowres ? el.k - static_cast<index_t>(prm.num_hr_units) : el.k / 4;
  const index_t u = prm.grid.hr_side / 2;
  // the unit's window of its padded block starts at the quarter's offset
  const index_t q = lowres ? 0 : el.k - 4 * k;
  const index_t i0 = (q >> 1) * u + el.i * static_cast<index_t>(prm.stride);
  const index_t j0 = (q & 1) * u + el.j * static_cast<index_t>(prm.stride);
  const index_t p = static_cast<index_t>(prm.padding), side = prm.grid.side(lowres);
  const auto cell = cell_of_position(static_cast<index_t>(lowres ? prm.lr_pos[k] : prm.hr_pos[k]), prm.grid);
  const auto hr_at = [&](index_t slot, index_t y, index_t x) { return prm.highres + hs.offset(slot, ch, y, x); };
  const auto lr_at = [&](index_t slot, index_t y, index_t x) { return prm.lowres + ls.offset(slot, ch, y, x); };
  MaxOfPack<Cvt, kPack> acc;
  const index_t kk = static_cast<index_t>(prm.kernel);
  for (index_t dy = 0; dy < kk; ++dy) {
    for (index_t dx = 0; dx < kk; ++dx) {
      const index_t i = i0 + dy, j = j0 + dx;  // padded-block coordinates
      const index_t y = i - p, x = j - p;
      if (y >= 0 && y < side && x >= 0 && x < side) {  // the block itself
        acc.add(lowres ? lr_at(k, y, x) : hr_at(k, y, x));
        continue;
      }
      const auto src = pad_source(prm.block_map, prm.grid, cell, lowres, i, j, p, false);
      switch (src.kind) {
        case kPadHighres:
          acc.add(hr_at(src.slot, src.y, src.x));
          break;
        case kPadLowres:
          acc.add(lr_at(src.slot, src.y, src.x));
          break;
        case kPadHighresMean:
          acc.add_mean(hr_at(src.slot, src.y, src.x), hr_at(src.slot, src.y, src.x + 1),
                       hr_at(src.slot, src.y + 1, src.x), hr_at(src.slot, src.y + 1, src.x + 1));
          break;
        default:  // image border: -inf, never the maximum
          break;
      }
    }
  }
  acc.store(prm.out + static_cast<int64_t>(e) * kPack);
}

template <typename scalar_t, typename D>
struct MaxPoolDenseParams {
  const scalar_t* x;
  Strides4 strides;
  scalar_t* out;  // [N, C, Ho, Wo], contiguous in NCHW or NHWC order
  D channels_div, out_w_div, out_h_div;  // channels_div divides by C / kPack
  int64_t in_h, in_w;
  int64_t kernel, stride, padding;
};

template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1>
SEGBLOCKS_HOST_DEVICE void max_pool_dense_element(const MaxPoolDenseParams<typename Cvt::scalar_t, D>& prm,
                                                  int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  const StridesT<index_t> s(prm.strides);
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_element<kChannelsLast>(e, prm.channels_div, prm.out_h_div, prm.out_w_div);
  const index_t n = el.k, c = el.c * kPack, oy = el.i, ox = el.j;
  const index_t st = static_cast<index_t>(prm.stride), p = static_cast<index_t>(prm.padding);
  const index_t kk = static_cast<index_t>(prm.kernel);
  const index_t ih = static_cast<index_t>(prm.in_h), iw = static_cast<index_t>(prm.in_w);
  MaxOfPack<Cvt, kPack> acc;
  for (index_t dy = 0; dy < kk; ++dy) {
    const index_t y = oy * st - p + dy;
    if (y < 0 || y >= ih) continue;
    for (index_t dx = 0; dx < kk; ++dx) {
      const index_t x = ox * st - p + dx;
      if (x < 0 || x >= iw) continue;
      acc.add(prm.x + s.offset(n, c, y, x));
    }
  }
  acc.store(prm.out + static_cast<int64_t>(e) * kPack);
}

}  // namespace segblocks
