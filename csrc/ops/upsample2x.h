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
// thread per output pixel and pack.
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

// h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d) per lane, rounded to the dtype; plus the
// skip (rounded again) when given; then the epilogue `post` (channels [ch, ch + kPack)).
template <typename Cvt, int kPack, typename index_t>
SEGBLOCKS_HOST_DEVICE void blend_store(const AccPack<Cvt, kPack>& a, const AccPack<Cvt, kPack>& b,
                                       const AccPack<Cvt, kPack>& c, const AccPack<Cvt, kPack>& d,
                                       const LinearTap<typename Cvt::acc_t, index_t>& ty,
                                       const LinearTap<typename Cvt::acc_t, index_t>& tx,
                                       const typename Cvt::scalar_t* skip, typename Cvt::scalar_t* out,
                                       const PostOp<typename Cvt::scalar_t>& post = {nullptr, nullptr},
                                       index_t ch = 0) {
  using acc_t = typename Cvt::acc_t;
  AccPack<Cvt, kPack> r;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) {
    const acc_t v = ty.w0 * (tx.w0 * a.v[l] + tx.w1 * b.v[l]) + ty.w1 * (tx.w0 * c.v[l] + tx.w1 * d.v[l]);
    r.v[l] = Cvt::to_acc(Cvt::round(v));
  }
  if (skip != nullptr) {
    AccPack<Cvt, kPack> s;
    s.load(skip);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) r.v[l] = r.v[l] + s.v[l];
  }
  if (post.scale != nullptr) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      const acc_t v = Cvt::to_acc(Cvt::round(r.v[l]));  // the value BlockPad's prologue would read
      r.v[l] = batchnorm_relu(v, Cvt::to_acc(post.scale[ch + l]), Cvt::to_acc(post.shift[ch + l]));
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
  blend_store<Cvt, kPack, index_t>(a, b, c, d, ty, tx, skip, prm.out + os.offset(el.k, ch, el.i, el.j), prm.post,
                                   ch);
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
