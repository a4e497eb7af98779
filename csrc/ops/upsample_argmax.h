// Fused segmentation head: bilinear upsampling by an integer factor followed by the argmax
// over channels, written straight into a uint8 label map. Skips the full-resolution
// logits (19 channels x every output pixel) that upsample-then-argmax would write and read.
//
//   upsample_argmax(highres [Nh, C, b, b], lowres [Nl, C, b/2, b/2], block_map, f)
//       -> labels [N, GH*b*f, GW*b*f] uint8
//   equals  argmax(combine(block_interpolate(blocks, f, "bilinear")), dim=1)
//   (block_interpolate: BlockPad 1 px "replicate", upsample x f with align_corners=False,
//   crop f px; combine: low-res blocks nearest-upsampled x2), value for value: every
//   intermediate the reference rounds to the tensor dtype is rounded here too.
//
//   upsample_argmax_units(units_padded, hr_pos, lr_pos, block_map, f): the same labels from
//   block_pad_units' padded tiles (below).
//
//   upsample_argmax_dense(logits [N, C, h, w], f) -> labels [N, h*f, w*f] uint8
//   equals  argmax(F.interpolate(logits, size=(h*f, w*f), mode="bilinear"), dim=1).
//
// Torch-free and CUDA-free (like block_indexing.h): the CPU kernel and the CUDA kernel run
// these element functions, with the scalar conversions supplied by `Cvt`
// (Cvt::to_acc(scalar_t) -> acc_t, Cvt::round(acc_t) -> scalar_t).
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

// One axis of bilinear interpolation, align_corners=False, the way torch's upsample
// kernels compute it: source = max(scale * (dst + 0.5) - 0.5, 0), i1 = i0 + 1 unless i0 is
// the last row, weights (1 - l, l).
template <typename acc_t, typename index_t>
struct LinearTap {
  index_t i0, i1;
  acc_t w0, w1;
};

template <typename acc_t, typename index_t>
SEGBLOCKS_HOST_DEVICE LinearTap<acc_t, index_t> linear_tap(acc_t scale, index_t dst, index_t in_size) {
  acc_t src = scale * (static_cast<acc_t>(dst) + static_cast<acc_t>(0.5)) - static_cast<acc_t>(0.5);
  if (src < static_cast<acc_t>(0)) src = static_cast<acc_t>(0);
  const index_t i0 = static_cast<index_t>(src);
  const index_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const acc_t l = src - static_cast<acc_t>(i0);
  return LinearTap<acc_t, index_t>{i0, i1, static_cast<acc_t>(1) - l, l};
}

// A corner pixel of the interpolation: `count` (1 or 4) values at p, p + d1, p + d2,
// p + d1 + d2 (4 = a high-res pixel seen at low resolution: their mean, rounded to the
// dtype as BlockPad's output is); channel c is at p + c * cstride.
template <typename scalar_t, typename index_t>
struct Corner {
  const scalar_t* p;
  index_t cstride, d1, d2;
  bool mean;
};

// kMayMean = false: every corner is a plain pixel (k.mean is ignored), so the channel loop
// carries no per-corner branch (the dense head and a block's interior pixels).
template <typename Cvt, bool kMayMean, typename scalar_t, typename index_t>
SEGBLOCKS_HOST_DEVICE typename Cvt::acc_t corner_value(const Corner<scalar_t, index_t>& k, index_t c) {
  using acc_t = typename Cvt::acc_t;
  const scalar_t* q = k.p + c * k.cstride;
  if (!kMayMean || !k.mean) return Cvt::to_acc(q[0]);
  const acc_t sum = Cvt::to_acc(q[0]) + Cvt::to_acc(q[k.d2]) + Cvt::to_acc(q[k.d1]) +
                    Cvt::to_acc(q[k.d1 + k.d2]);
  return Cvt::to_acc(Cvt::round(sum * static_cast<acc_t>(0.25)));
}

// argmax over channels of the bilinear blend of four corners; the blended value is rounded
// to the dtype first (the reference's upsampled logits are), ties go to the first channel
// and NaN counts as the maximum, like torch.argmax.
template <typename Cvt, bool kMayMean, typename scalar_t, typename index_t>
SEGBLOCKS_HOST_DEVICE uint8_t blend_argmax(const Corner<scalar_t, index_t>& c00,
                                           const Corner<scalar_t, index_t>& c01,
                                           const Corner<scalar_t, index_t>& c10,
                                           const Corner<scalar_t, index_t>& c11,
                                           const LinearTap<typename Cvt::acc_t, index_t>& ty,
                                           const LinearTap<typename Cvt::acc_t, index_t>& tx,
                                           index_t channels) {
  using acc_t = typename Cvt::acc_t;
  acc_t best = 0;
  index_t arg = 0;
  for (index_t c = 0; c < channels; ++c) {
    const acc_t v00 = corner_value<Cvt, kMayMean>(c00, c), v01 = corner_value<Cvt, kMayMean>(c01, c);
    const acc_t v10 = corner_value<Cvt, kMayMean>(c10, c), v11 = corner_value<Cvt, kMayMean>(c11, c);
    const acc_t blend = ty.w0 * (tx.w0 * v00 + tx.w1 * v01) + ty.w1 * (tx.w0 * v10 + tx.w1 * v11);
    const acc_t v = Cvt::to_acc(Cvt::round(blend));
    const bool v_nan = v != v, best_nan = best != best;
    if (c == 0 || (!best_nan && (v > best || v_nan))) {
      best = v;
      arg = c;
    }
  }
  return static_cast<uint8_t>(arg);
}

// ---------------------------------------------------------------------------------------
// blocks
// ---------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t, typename D>
struct UpsampleArgmaxParams {
  const scalar_t* highres;
  Strides4 highres_strides;
  const scalar_t* lowres;
  Strides4 lowres_strides;
  uint8_t* labels;  // [N, GH*b*f, GW*b*f], contiguous
  const int32_t* block_map;
  GridIndexer<D> grid;  // hr_side = b, at the logits' resolution
  D out_block_div;      // divides by b * f
  D out_width_div;      // divides by GW * b * f
  D out_height_div;     // divides by GH * b * f
  int64_t factor;
  int64_t channels;
  acc_t scale;  // 1 / f, as torch's upsampling computes it for scale_factor=f
};

template <typename scalar_t, typename D, typename index_t>
SEGBLOCKS_HOST_DEVICE Corner<scalar_t, index_t> block_corner(const PadSource<index_t>& src,
                                                             const scalar_t* highres,
                                                             const StridesT<index_t>& hs,
                                                             const scalar_t* lowres,
                                                             const StridesT<index_t>& ls) {
  // replicate mode: never kPadConstant
  if (src.kind == kPadLowres) {
    return Corner<scalar_t, index_t>{lowres + ls.offset(src.slot, 0, src.y, src.x), ls.c, 0, 0, false};
  }
  return Corner<scalar_t, index_t>{highres + hs.offset(src.slot, 0, src.y, src.x), hs.c, hs.h, hs.w,
                                   src.kind == kPadHighresMean};
}

template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void upsample_argmax_element(
    const UpsampleArgmaxParams<typename Cvt::scalar_t, typename Cvt::acc_t, D>& prm, int64_t linear) {
  using index_t = typename D::index_t;
  using scalar_t = typename Cvt::scalar_t;
  const StridesT<index_t> hs(prm.highres_strides), ls(prm.lowres_strides);
  const index_t e = static_cast<index_t>(linear);
  const index_t f = static_cast<index_t>(prm.factor);
  const index_t out_w = static_cast<index_t>(prm.out_width_div.divisor);
  const index_t out_h = static_cast<index_t>(prm.out_height_div.divisor);
  const index_t bf = static_cast<index_t>(prm.out_block_div.divisor);
  const index_t row = prm.out_width_div.div(e);
  const index_t X = e - row * out_w;
  const index_t n = prm.out_height_div.div(row);
  const index_t Y = row - n * out_h;
  const index_t r = prm.out_block_div.div(Y), c = prm.out_block_div.div(X);
  index_t y = Y - r * bf, x = X - c * bf;
  const int32_t m = prm.block_map[(n * prm.grid.grid_h + r) * prm.grid.grid_w + c];
  const bool lowres = m < 0;
  if (lowres) {  // combine upsamples the low-res block's output x2 (nearest)
    y /= 2;
    x /= 2;
  }
  const index_t padded = prm.grid.side(lowres) + 2;
  // output pixel (y, x) of the block is pixel (y + f, x + f) of the upsampled padded block
  const auto ty = linear_tap<typename Cvt::acc_t, index_t>(prm.scale, y + f, padded);
  const auto tx = linear_tap<typename Cvt::acc_t, index_t>(prm.scale, x + f, padded);
  const index_t side = padded - 2;
  const index_t channels = static_cast<index_t>(prm.channels);
  if (ty.i0 >= 1 && ty.i1 <= side && tx.i0 >= 1 && tx.i1 <= side) {
    // all four corners inside the block itself (all but a ~f/2-pixel frame of every block):
    // the corners pad_source would find, without the neighbour lookups
    const StridesT<index_t>& st = lowres ? ls : hs;
    const index_t slot = lowres ? -1 - static_cast<index_t>(m) : static_cast<index_t>(m);
    const scalar_t* p00 = (lowres ? prm.lowres : prm.highres) + st.offset(slot, 0, ty.i0 - 1, tx.i0 - 1);
    const index_t dy = (ty.i1 - ty.i0) * st.h, dx = (tx.i1 - tx.i0) * st.w;
    using C = Corner<scalar_t, index_t>;
    prm.labels[e] = blend_argmax<Cvt, false>(C{p00, st.c, 0, 0, false}, C{p00 + dx, st.c, 0, 0, false},
                                      C{p00 + dy, st.c, 0, 0, false}, C{p00 + dy + dx, st.c, 0, 0, false},
                                      ty, tx, channels);
    return;
  }
  const GridCell<index_t> cell{n, r, c};
  const index_t one = 1;
  const auto corner = [&](index_t i, index_t j) {
    return block_corner<scalar_t, D, index_t>(
        pad_source(prm.block_map, prm.grid, cell, lowres, i, j, one, true), prm.highres, hs,
        prm.lowres, ls);
  };
  prm.labels[e] = blend_argmax<Cvt, true>(corner(ty.i0, tx.i0), corner(ty.i0, tx.i1), corner(ty.i1, tx.i0),
                                    corner(ty.i1, tx.i1), ty, tx, channels);
}

// ---------------------------------------------------------------------------------------
// units: the logits BlockPad-ed (1 px, replicate) into tiles of one size
// ---------------------------------------------------------------------------------------
//
//   upsample_argmax_units(units_padded [4Nh + Nl, C, u+2, u+2], hr_pos, lr_pos, block_map, f)
//       -> labels [N, GH*2u*f, GW*2u*f]   (block_pad_units' output, u = low-res block side)
//   equals upsample_argmax(highres, lowres, ...) of the blocks that were padded: every tile
//   carries its own 1-px halo, so each output reads its four corners from its own tile with
//   no neighbour lookup, and a low-res value is computed once for the 2x2 output pixels
//   that combine's nearest upsampling gives it.

template <typename scalar_t, typename acc_t, typename D>
struct UpsampleArgmaxUnitsParams {
  const scalar_t* units;  // [4Nh + Nl, C, u+2, u+2]
  Strides4 strides;
  uint8_t* labels;  // [N, GH*2u*f, GW*2u*f], contiguous
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  GridIndexer<D> grid;  // hr_side = 2u
  D tile_div;           // divides by (u*f)^2, the values of one tile
  D row_div;            // divides by u*f
  int64_t num_hr_units;  // 4 Nh
  int64_t factor;
  int64_t channels;
  acc_t scale;  // 1 / f
};

template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void upsample_argmax_units_element(
    const UpsampleArgmaxUnitsParams<typename Cvt::scalar_t, typename Cvt::acc_t, D>& prm, int64_t linear) {
  using index_t = typename D::index_t;
  using scalar_t = typename Cvt::scalar_t;
  using C = Corner<scalar_t, index_t>;
  const StridesT<index_t> s(prm.strides);
  const index_t e = static_cast<index_t>(linear);
  const index_t uf = static_cast<index_t>(prm.row_div.divisor);
  const index_t t = prm.tile_div.div(e);
  const index_t rem = e - t * uf * uf;
  const index_t oy = prm.row_div.div(rem), ox = rem - oy * uf;
  const index_t f = static_cast<index_t>(prm.factor);
  const index_t u = prm.grid.hr_side / 2;
  // value (oy, ox) of the tile is pixel (oy + f, ox + f) of the upsampled padded tile
  const auto ty = linear_tap<typename Cvt::acc_t, index_t>(prm.scale, oy + f, u + 2);
  const auto tx = linear_tap<typename Cvt::acc_t, index_t>(prm.scale, ox + f, u + 2);
  const scalar_t* p = prm.units + s.offset(t, 0, 0, 0);
  const index_t r0 = ty.i0 * s.h, r1 = ty.i1 * s.h, c0 = tx.i0 * s.w, c1 = tx.i1 * s.w;
  const uint8_t label = blend_argmax<Cvt, false>(C{p + r0 + c0, s.c, 0, 0, false}, C{p + r0 + c1, s.c, 0, 0, false},
                                                 C{p + r1 + c0, s.c, 0, 0, false}, C{p + r1 + c1, s.c, 0, 0, false},
                                                 ty, tx, static_cast<index_t>(prm.channels));
  const bool lowres = t >= static_cast<index_t>(prm.num_hr_units);
  const index_t k = lowres ? t - static_cast<index_t>(prm.num_hr_units) : t / 4;
  const auto cell = cell_of_position(static_cast<index_t>(lowres ? prm.lr_pos[k] : prm.hr_pos[k]), prm.grid);
  const index_t bf = 2 * uf;  // a block's side in the label map
  const index_t out_w = prm.grid.grid_w * bf;
  uint8_t* block = prm.labels + ((cell.n * prm.grid.grid_h + cell.r) * bf) * out_w + cell.c * bf;
  if (!lowres) {
    const index_t q = t - 4 * k;
    block[((q >> 1) * uf + oy) * out_w + (q & 1) * uf + ox] = label;
  } else {  // combine upsamples the low-res block's output x2 (nearest)
    uint8_t* o = block + (2 * oy) * out_w + 2 * ox;
    o[0] = label;
    o[1] = label;
    o[out_w] = label;
    o[out_w + 1] = label;
  }
}

// ---------------------------------------------------------------------------------------
// dense
// ---------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t, typename D>
struct UpsampleArgmaxDenseParams {
  const scalar_t* logits;
  Strides4 strides;
  uint8_t* labels;  // [N, h*f, w*f], contiguous
  D out_width_div;
  D out_height_div;
  int64_t in_h, in_w;
  int64_t channels;
  acc_t scale_h, scale_w;  // in / out, as torch computes it for size=(h*f, w*f)
};

template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void upsample_argmax_dense_element(
    const UpsampleArgmaxDenseParams<typename Cvt::scalar_t, typename Cvt::acc_t, D>& prm,
    int64_t linear) {
  using index_t = typename D::index_t;
  using scalar_t = typename Cvt::scalar_t;
  const StridesT<index_t> s(prm.strides);
  const index_t e = static_cast<index_t>(linear);
  const index_t out_w = static_cast<index_t>(prm.out_width_div.divisor);
  const index_t out_h = static_cast<index_t>(prm.out_height_div.divisor);
  const index_t row = prm.out_width_div.div(e);
  const index_t X = e - row * out_w;
  const index_t n = prm.out_height_div.div(row);
  const index_t Y = row - n * out_h;
  const auto ty = linear_tap<typename Cvt::acc_t, index_t>(prm.scale_h, Y, static_cast<index_t>(prm.in_h));
  const auto tx = linear_tap<typename Cvt::acc_t, index_t>(prm.scale_w, X, static_cast<index_t>(prm.in_w));
  const auto corner = [&](index_t i, index_t j) {
    return Corner<scalar_t, index_t>{prm.logits + s.offset(n, 0, i, j), s.c, 0, 0, false};
  };
  prm.labels[e] = blend_argmax<Cvt, false>(corner(ty.i0, tx.i0), corner(ty.i0, tx.i1), corner(ty.i1, tx.i0),
                                    corner(ty.i1, tx.i1), ty, tx, static_cast<index_t>(prm.channels));
}

}  // namespace segblocks
