// Bilinear x2 upsampling (align_corners=False) with an optional skip added, on units
// (fused with BlockPad) and dense: SwiftNet's decoder step `interpolate(x, 2 * size) + skip`.
//
//   upsample2x_units(highres, lowres, hr_pos, lr_pos, block_map, quartered, skip)
//       -> [4Nh + Nl, C, 2u, 2u]  (u = h/2: the units one stride finer)
//   equals  crop2(F.interpolate(block_pad_units(highres, lowres, ..., 1, "replicate",
//                                               quartered), scale_factor=2)) (+ skip)
//   without writing the padded tiles (UnitWindow looks the 1-px halo up) and without
//   computing the halo outputs the crop would drop.
//
//   upsample2x_units(..., skip, post_scale, post_shift, padding)
//       -> [4Nh + Nl, C, 2u + 2p, 2u + 2p]
//   equals  block_pad_units(relu(up * post_scale + post_shift), p, "constant", 0)
//   (up: the upsampling (+ skip) above): the padded tiles a zero-padded convolution after
//   an eval BatchNorm + ReLU reads (SwiftNet's blend convolutions), written by this op:
//   the element functions write each output into the interior of its tile (out_strides),
//   and block_pad_ring fills the p-px frame from the interiors (ops/cuda/block_pad.cuh).
//
//   upsample2x_dense(x [N, C, H, W], skip) -> [N, C, 2H, 2W]
//       = F.interpolate(x, scale_factor=2, mode="bilinear") (+ skip)
//
// Each output is PyTorch's formula: source index 0.5 * (o + 0.5) - 0.5 (clamped at 0),
// h0 * (w0 * x00 + w1 * x01) + h1 * (w0 * x10 + w1 * x11) in acc_t, rounded to the dtype;
// with a skip, that rounded value plus the skip, rounded again (as `up + skip` would be).
// On the GPU, channels_last maps with a channel count that fills 16-byte packs run one
// thread per output pixel and pack (dense), or per patch of 1, 2 or 4 outputs and pack (units:
// upsample2x_units_patch_element; the CPU op runs upsample2x_units_element, one per output).
//
// Torch-free and CUDA-free: the CPU and CUDA kernels run these element functions.
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"
#include "ops/unit_window.h"
#include "ops/upsample_argmax.h"  // linear_tap: one axis of torch's bilinear taps

namespace segblocks {

// An optional per-channel epilogue relu(v * scale + shift) on the rounded value, rounded
// again: an eval BatchNorm + ReLU, BlockPad's prologue (batchnorm_relu, block_indexing.h),
// so the values are those block_pad_units(..., pre) would read. scale == nullptr: none.
template <typename scalar_t>
struct PostOp {
  const scalar_t* scale;
  const scalar_t* shift;
};

// PostOp's scale and shift of channels [ch, ch + kPack), read once (one aligned load each)
// for the outputs of a thread, kept in the dtype (`on` false: no epilogue).
template <typename Cvt, int kPack>
struct PostPack {
  bool on = false;
  Pack<typename Cvt::scalar_t, kPack> scale, shift;
  PostPack() = default;
  template <typename index_t>
  SEGBLOCKS_HOST_DEVICE PostPack(const PostOp<typename Cvt::scalar_t>& post, index_t ch) : on(post.scale != nullptr) {
    if (!on) return;  // packs of kPack > 1: the launcher checked the pointers' alignment
    scale = load_pack<typename Cvt::scalar_t, kPack>(post.scale + ch);
    shift = load_pack<typename Cvt::scalar_t, kPack>(post.shift + ch);
  }
};

// Lane l of a pack in the accumulation type: values already converted (AccPack) or as
// stored (Pack, converted here, lane by lane, so that a thread holding several packs keeps
// them in the dtype's registers).
template <typename Cvt, int kPack>
SEGBLOCKS_HOST_DEVICE typename Cvt::acc_t acc_lane(const AccPack<Cvt, kPack>& x, int l) {
  return x.v[l];
}
template <typename Cvt, int kPack>
SEGBLOCKS_HOST_DEVICE typename Cvt::acc_t acc_lane(const Pack<typename Cvt::scalar_t, kPack>& x, int l) {
  return Cvt::to_acc(x.v[l]);
}

// h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d) per lane, rounded to the dtype; plus the
// skip (rounded again) when given; then the epilogue `post`. X: AccPack or Pack.
template <typename Cvt, int kPack, typename index_t, typename X>
SEGBLOCKS_HOST_DEVICE void blend_store(const X& a, const X& b, const X& c, const X& d,
                                       const LinearTap<typename Cvt::acc_t, index_t>& ty,
                                       const LinearTap<typename Cvt::acc_t, index_t>& tx,
                                       const typename Cvt::scalar_t* skip, typename Cvt::scalar_t* out,
                                       const PostPack<Cvt, kPack>& post = PostPack<Cvt, kPack>()) {
  using acc_t = typename Cvt::acc_t;
  const auto at = [](const X& x, int l) { return acc_lane<Cvt, kPack>(x, l); };
  AccPack<Cvt, kPack> r;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) {
    const acc_t v = ty.w0 * (tx.w0 * at(a, l) + tx.w1 * at(b, l)) + ty.w1 * (tx.w0 * at(c, l) + tx.w1 * at(d, l));
    r.v[l] = Cvt::to_acc(Cvt::round(v));
  }
  if (skip != nullptr) {
    AccPack<Cvt, kPack> s;
    s.load(skip);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) r.v[l] = r.v[l] + s.v[l];
  }
  if (post.on) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      const acc_t v = Cvt::to_acc(Cvt::round(r.v[l]));  // the value BlockPad's prologue would read
      r.v[l] = batchnorm_relu(v, Cvt::to_acc(post.scale.v[l]), Cvt::to_acc(post.shift.v[l]));
    }
  }
  r.store(out);
}

template <typename scalar_t, typename D>
struct Upsample2xUnitsParams {
  UnitsInput<scalar_t> in;
  const scalar_t* skip;  // [4Nh + Nl, C, 2u, 2u] or nullptr
  Strides4 skip_strides;
  scalar_t* out;  // [4Nh + Nl, C, 2u, 2u]: a tensor in NCHW or NHWC order, or the interior of padded tiles
  Strides4 out_strides;
  PostOp<scalar_t> post;
  GridIndexer<D> grid;
  D channels_div;  // divides by C / kPack
  D out_side_div;  // divides by 2u
  int64_t num_hr_units;  // 4 Nh
};

template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1>
SEGBLOCKS_HOST_DEVICE void upsample2x_units_element(const Upsample2xUnitsParams<typename Cvt::scalar_t, D>& prm,
                                                    int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  using acc_t = typename Cvt::acc_t;
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div, prm.out_side_div);
  const index_t ch = el.c * kPack;
  const UnitWindow<Cvt, kPack, D> win(prm.in, prm.grid, prm.num_hr_units, el.k, ch, 1, true);
  // output (i, j) is output (i + 2, j + 2) of the padded tile's (u + 2 px) upsampling
  const index_t tile = prm.grid.hr_side / 2 + 2;
  const acc_t half = static_cast<acc_t>(0.5);  // the scale of a x2 upsampling
  const auto ty = linear_tap(half, el.i + 2, tile), tx = linear_tap(half, el.j + 2, tile);
  AccPack<Cvt, kPack> a, b, c, d;  // replicate mode: every tile pixel has a source
  win.read(ty.i0, tx.i0, a);
  win.read(ty.i0, tx.i1, b);
  win.read(ty.i1, tx.i0, c);
  win.read(ty.i1, tx.i1, d);
  const StridesT<index_t> ss(prm.skip_strides), os(prm.out_strides);
  const typename Cvt::scalar_t* skip = prm.skip == nullptr ? nullptr : prm.skip + ss.offset(el.k, ch, el.i, el.j);
  blend_store<Cvt, kPack, index_t>(a, b, c, d, ty, tx, skip, prm.out + os.offset(el.k, ch, el.i, el.j),
                                   PostPack<Cvt, kPack>(prm.post, ch));
}

// A patch of kRows x kCols outputs of upsample2x_units (1 or 2 each; the GPU's elements):
// outputs (o0 + r, p0 + s) of unit k, channels [ch, ch + kPack), where `linear` runs over
// [4Nh + Nl, C / kPack, 2u / kRows, 2u / kCols] in the output's order. Output row 2m + r
// blends tile rows m + r and m + r + 1 (linear_tap at 2m + r + 2 in the (u + 2)-px padded
// tile: source m + 0.75 + 0.5 r, never clamped, never at the last row); the same for columns.
// So the patch reads its (kRows + 1) x (kCols + 1) tile pixels once (a 2x2 quad: 9, where
// four upsample2x_units_element calls read 16 with a lookup each), from one base pointer
// where they lie inside the unit, each through BlockPad's rules (UnitWindow) elsewhere; every
// output is computed as upsample2x_units_element computes it.
template <typename Cvt, bool kChannelsLast, typename D, int kPack, int kRows, int kCols>
SEGBLOCKS_HOST_DEVICE void upsample2x_units_patch_element(
    const Upsample2xUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  static_assert((kRows == 1 || kRows == 2) && (kCols == 1 || kCols == 2), "patches of 1 or 2 rows and columns");
  using index_t = typename D::index_t;
  using acc_t = typename Cvt::acc_t;
  using scalar_t = typename Cvt::scalar_t;
  using P = Pack<scalar_t, kPack>;
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_element<kChannelsLast>(e, prm.channels_div,
                                                 kRows == 2 ? prm.grid.lr_side_div : prm.grid.hr_side_div,
                                                 kCols == 2 ? prm.grid.lr_side_div : prm.grid.hr_side_div);
  const index_t ch = el.c * kPack;
  const index_t o0 = kRows * el.i, p0 = kCols * el.j;  // the first output row and column
  const index_t top = (o0 >> 1) + (o0 & 1), left = (p0 >> 1) + (p0 & 1);  // their first taps' tile pixel
  const UnitWindow<Cvt, kPack, D> win(prm.in, prm.grid, prm.num_hr_units, el.k, ch, 1, true);
  const index_t u = prm.grid.hr_side / 2;
  P t[kRows + 1][kCols + 1];  // tile pixels (top + dy, left + dx): unit pixels (top - 1 + dy, left - 1 + dx)
  if (top >= 1 && top + kRows <= u && left >= 1 && left + kCols <= u) {
    const scalar_t* p = win.own_at(top - 1, left - 1);
    const index_t row = win.own_row_step(), col = win.own_col_step();
    SEGBLOCKS_UNROLL
    for (int dy = 0; dy <= kRows; ++dy) {
      SEGBLOCKS_UNROLL
      for (int dx = 0; dx <= kCols; ++dx) t[dy][dx] = load_pack<scalar_t, kPack>(p + dy * row + dx * col);
    }
  } else {
    SEGBLOCKS_UNROLL
    for (int dy = 0; dy <= kRows; ++dy) {
      SEGBLOCKS_UNROLL
      for (int dx = 0; dx <= kCols; ++dx) {  // replicate mode: every tile pixel has a source
        win.fetch_values(win.locate(top + dy, left + dx), t[dy][dx].v);
      }
    }
  }
  const index_t tile = u + 2;
  const acc_t half = static_cast<acc_t>(0.5);  // the scale of a x2 upsampling
  const PostPack<Cvt, kPack> post(prm.post, ch);
  const StridesT<index_t> ss(prm.skip_strides), os(prm.out_strides);
  const scalar_t* skip = prm.skip == nullptr ? nullptr : prm.skip + ss.offset(el.k, ch, o0, p0);
  scalar_t* out = prm.out + os.offset(el.k, ch, o0, p0);
  SEGBLOCKS_UNROLL
  for (int r = 0; r < kRows; ++r) {  // output row o0 + r: tile rows top + r, top + r + 1
    const auto ty = linear_tap(half, o0 + r + 2, tile);
    SEGBLOCKS_UNROLL
    for (int s = 0; s < kCols; ++s) {  // output column p0 + s: tile columns left + s, left + s + 1
      const auto tx = linear_tap(half, p0 + s + 2, tile);
      blend_store<Cvt, kPack, index_t>(t[r][s], t[r][s + 1], t[r + 1][s], t[r + 1][s + 1], ty, tx,
                                       skip == nullptr ? nullptr : skip + r * ss.h + s * ss.w,
                                       out + r * os.h + s * os.w, post);
    }
  }
}

template <typename scalar_t, typename D>
struct Upsample2xDenseParams {
  const scalar_t* x;
  Strides4 strides;
  const scalar_t* skip;  // [N, C, 2H, 2W] or nullptr
  Strides4 skip_strides;
  scalar_t* out;  // [N, C, 2H, 2W], contiguous in NCHW or NHWC order
  D channels_div, out_w_div, out_h_div;  // channels_div divides by C / kPack
  int64_t in_h, in_w;
};

template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1>
SEGBLOCKS_HOST_DEVICE void upsample2x_dense_element(const Upsample2xDenseParams<typename Cvt::scalar_t, D>& prm,
                                                    int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  using acc_t = typename Cvt::acc_t;
  const StridesT<index_t> s(prm.strides), ss(prm.skip_strides);
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_element<kChannelsLast>(e, prm.channels_div, prm.out_h_div, prm.out_w_div);
  const index_t n = el.k, ch = el.c * kPack;
  const acc_t half = static_cast<acc_t>(0.5);  // the scale of a x2 upsampling
  const auto ty = linear_tap(half, el.i, static_cast<index_t>(prm.in_h));
  const auto tx = linear_tap(half, el.j, static_cast<index_t>(prm.in_w));
  AccPack<Cvt, kPack> a, b, c, d;
  a.load(prm.x + s.offset(n, ch, ty.i0, tx.i0));
  b.load(prm.x + s.offset(n, ch, ty.i0, tx.i1));
  c.load(prm.x + s.offset(n, ch, ty.i1, tx.i0));
  d.load(prm.x + s.offset(n, ch, ty.i1, tx.i1));
  const typename Cvt::scalar_t* skip = prm.skip == nullptr ? nullptr : prm.skip + ss.offset(n, ch, el.i, el.j);
  blend_store<Cvt, kPack, index_t>(a, b, c, d, ty, tx, skip, prm.out + static_cast<int64_t>(e) * kPack);
}

}  // namespace segblocks
