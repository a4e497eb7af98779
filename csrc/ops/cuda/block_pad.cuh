// BlockPad kernels on the GPU: element functions and their launch helpers (the launchers
// and explicit instantiations are in block_pad_kernel.cu).
//
// Forward: one thread per padded output element (gather), or per pack of 16 bytes of
// channels in channels_last (block_pad_packed_at), in two phases: where the element lies and
// reads from (locate_pad_source, locate_ring_source), then its value (block_pad_element_at,
// block_pad_packed_at); located_grid_stride_kernel may run the first before it waits for
// the kernel before it (pdl.cuh). Interior pixels are the block
// itself; halo pixels find their source with pad_source() (ops/block_indexing.h, the same
// code the CPU kernel runs), which handles any padding, including halos that reach several
// cells away (p=3 around 2-px blocks).
//
// Backward: one thread per *input* gradient element; visit_pad_readers() enumerates, in a
// fixed order, every padded output pixel that read it and the thread sums their gradients.
// Every element is written once by one thread with a fixed summation order: bitwise
// reproducible, no atomics. (The scatter form, one thread per padded pixel adding into its
// source, would need float atomics because halos of neighbouring blocks overlap.) The
// enumeration is repeated per channel; in channels_last order the threads of a warp share a
// pixel, so they take the same path and read consecutive channels.
#pragma once

#include <initializer_list>
#include <type_traits>

#include "ops/block_indexing.h"
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/cuda_scalar.cuh"

namespace segblocks {
namespace cuda {

template <typename scalar_t, typename D>
struct BlockPadParams {
  const scalar_t* highres;
  Strides4 highres_strides;
  const scalar_t* lowres;
  Strides4 lowres_strides;
  scalar_t* highres_padded;  // [Nh, C, h+2p, h+2p] (units: [4Nh, C, h/2+2p, h/2+2p]), contiguous
  scalar_t* lowres_padded;   // [Nl, C, h/2+2p, h/2+2p], same order
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
  GridIndexer<D> grid;
  D channels_div;
  D hr_padded_div;  // divides by h + 2p (units: h/2 + 2p)
  D lr_padded_div;  // divides by h/2 + 2p
  int64_t padding;
  bool replicate;
  scalar_t fill;
  int64_t hr_total;  // elements of highres_padded; the following ones are lowres_padded's
  int64_t hr_unit_in;   // 0: highres is [Nh, C, h, h]; h/2: it is stored as units (HrStridesT)
  int64_t hr_unit_out;  // 0: pad whole high-res blocks; h/2: pad each unit (quarter) of them
  // optional prologue, per channel: every value read is relu(value * pre_scale + pre_shift)
  // first (an eval BatchNorm + ReLU before the convolution); nullptr: none
  const scalar_t* pre_scale;
  const scalar_t* pre_shift;
};

// The prologue on one value of channel c (rounded to the dtype, as addcmul + relu_ would
// leave it; NaN stays NaN like torch.relu).
template <typename scalar_t, typename index_t>
SEGBLOCKS_HOST_DEVICE scalar_t pre_op(const scalar_t* scale, const scalar_t* shift, index_t c, scalar_t v) {
  return from_acc<scalar_t>(batchnorm_relu(to_acc(v), to_acc(scale[c]), to_acc(shift[c])));
}

// Where element (or pack) `linear` of the two padded outputs lies.
template <typename index_t>
struct PaddedPixel {
  bool out_lowres;
  index_t e;                  // index within its own output
  BlockElement<index_t> el;   // block, channel (or pack), padded row and column
  index_t y, x;               // row and column in the unpadded block
  bool interior;              // inside the block: read the block itself at (y, x)
};

// px.el in the padded block's coordinates (a high-res unit's already moved to its quarter's
// offset): the pixel's row and column in the unpadded block, and whether it lies inside.
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE void place_in_block(const BlockPadParams<scalar_t, D>& prm, PaddedPixel<typename D::index_t>& px) {
  using index_t = typename D::index_t;
  const index_t p = static_cast<index_t>(prm.padding), side = prm.grid.side(px.out_lowres);
  px.y = px.el.i - p;
  px.x = px.el.j - p;
  px.interior = px.y >= 0 && px.y < side && px.x >= 0 && px.x < side;
}

template <bool kChannelsLast, typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE PaddedPixel<typename D::index_t> locate_padded(const BlockPadParams<scalar_t, D>& prm,
                                                                     int64_t linear) {
  using index_t = typename D::index_t;
  PaddedPixel<index_t> px;
  px.out_lowres = linear >= prm.hr_total;
  px.e = static_cast<index_t>(px.out_lowres ? linear - prm.hr_total : linear);
  px.el = unravel_block_element<kChannelsLast>(px.e, prm.channels_div,
                                               px.out_lowres ? prm.lr_padded_div : prm.hr_padded_div);
  if (!px.out_lowres && prm.hr_unit_out != 0) {
    // padded unit 4k + q is the window of block k's padded block at the quarter's offset
    const index_t u = static_cast<index_t>(prm.hr_unit_out), q = px.el.k & 3;
    px.el.k >>= 2;
    px.el.i += (q >> 1) * u;
    px.el.j += (q & 1) * u;
  }
  place_in_block(prm, px);
  return px;
}

// Source of a halo pixel (pad_source for the pixel's block).
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE PadSource<typename D::index_t> halo_source(
    const BlockPadParams<scalar_t, D>& prm, const PaddedPixel<typename D::index_t>& px) {
  using index_t = typename D::index_t;
  const auto cell = cell_of_position(
      static_cast<index_t>(px.out_lowres ? prm.lr_pos[px.el.k] : prm.hr_pos[px.el.k]), prm.grid);
  return pad_source(prm.block_map, prm.grid, cell, px.out_lowres, px.el.i, px.el.j,
                    static_cast<index_t>(prm.padding), prm.replicate);
}

// A padded element located (locate_padded, or the frame pass's own arithmetic) and, outside
// its block, where its value comes from: all the element needs before it reads a map. The
// lookups read only the layout (positions, block map), which torch ops build and no kernel of
// this extension writes, so a programmatic launch may do them before it waits for the kernel
// before it (located_grid_stride_kernel, block_copy.cuh).
template <typename index_t>
struct LocatedPixel {
  PaddedPixel<index_t> px;
  PadSource<index_t> src;  // not used inside the block
};

template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE LocatedPixel<typename D::index_t> with_source(const BlockPadParams<scalar_t, D>& prm,
                                                                    const PaddedPixel<typename D::index_t>& px) {
  LocatedPixel<typename D::index_t> l{px, {}};
  if (!px.interior) l.src = halo_source(prm, px);
  return l;
}

// One located element of the padded outputs: its value by BlockPad's rules, stored.
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE void block_pad_element_at(const BlockPadParams<scalar_t, D>& prm,
                                                const LocatedPixel<typename D::index_t>& located) {
  using index_t = typename D::index_t;
  using acc_t = acc_type<scalar_t>;
  const HrStridesT<index_t> hs(prm.highres_strides, prm.hr_unit_in);
  const StridesT<index_t> ls(prm.lowres_strides);
  const auto& px = located.px;
  const bool out_lowres = px.out_lowres;
  const auto& el = px.el;
  const bool pre = prm.pre_scale != nullptr;
  const auto op = [&](scalar_t x) { return pre ? pre_op(prm.pre_scale, prm.pre_shift, el.c, x) : x; };
  scalar_t v;
  if (px.interior) {  // the block itself
    v = op(out_lowres ? prm.lowres[ls.offset(el.k, el.c, px.y, px.x)]
                      : prm.highres[hs.offset(el.k, el.c, px.y, px.x)]);
  } else {
    const auto& src = located.src;
    switch (src.kind) {
      case kPadHighres:
        v = op(prm.highres[hs.offset(src.slot, el.c, src.y, src.x)]);
        break;
      case kPadLowres:
        v = op(prm.lowres[ls.offset(src.slot, el.c, src.y, src.x)]);
        break;
      case kPadHighresMean: {
        const scalar_t* q = prm.highres;
        // same summation order as avg_pool2d in the reference
        const acc_t sum = to_acc(op(q[hs.offset(src.slot, el.c, src.y, src.x)])) +
                          to_acc(op(q[hs.offset(src.slot, el.c, src.y, src.x + 1)])) +
                          to_acc(op(q[hs.offset(src.slot, el.c, src.y + 1, src.x)])) +
                          to_acc(op(q[hs.offset(src.slot, el.c, src.y + 1, src.x + 1)]));
        v = from_acc<scalar_t>(sum * acc_t(0.25));
        break;
      }
      default:
        v = prm.fill;
    }
  }
  (out_lowres ? prm.lowres_padded : prm.highres_padded)[px.e] = v;
}

// The full pass's first phase: where element `linear` lies and reads from (the second is
// block_pad_element_at or block_pad_packed_at).
template <typename scalar_t, bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE LocatedPixel<typename D::index_t> locate_pad_source(const BlockPadParams<scalar_t, D>& prm,
                                                                          int64_t linear) {
  return with_source(prm, locate_padded<kChannelsLast>(prm, linear));
}

// Channels-last fast path: one thread per padded pixel and *pack* of kPack consecutive
// channels (16 bytes: 8 half/bfloat16, 4 float, 2 double), so every load and store is one
// 128-bit access and the pixel's source is found once per pack instead of once per
// channel. Used when the channel count is a multiple of the pack and every tensor is
// channels_last with 16-byte aligned pixels; the values (and the order of the 2x2 mean's
// additions) are those of block_pad_element_at.
// (Pack, load_pack, PackWidth: ops/block_indexing.h)
template <typename scalar_t, int kPack, typename D>
SEGBLOCKS_HOST_DEVICE void block_pad_packed_at(const BlockPadParams<scalar_t, D>& prm,
                                               const LocatedPixel<typename D::index_t>& located) {
  // here prm.channels_div divides by C / kPack and prm.hr_total counts packs
  using index_t = typename D::index_t;
  using acc_t = acc_type<scalar_t>;
  using P = Pack<scalar_t, kPack>;
  const HrStridesT<index_t> hs(prm.highres_strides, prm.hr_unit_in);
  const StridesT<index_t> ls(prm.lowres_strides);
  const auto& px = located.px;
  const bool out_lowres = px.out_lowres;
  const index_t c = px.el.c * kPack;
  const bool pre = prm.pre_scale != nullptr;
  const auto load = [&](const scalar_t* p) {  // a pack, with the prologue applied
    P x = load_pack<scalar_t, kPack>(p);
    if (pre) {
#pragma unroll
      for (int l = 0; l < kPack; ++l) x.v[l] = pre_op(prm.pre_scale, prm.pre_shift, c + l, x.v[l]);
    }
    return x;
  };
  P v;
  if (px.interior) {
    v = out_lowres ? load(prm.lowres + ls.offset(px.el.k, c, px.y, px.x))
                   : load(prm.highres + hs.offset(px.el.k, c, px.y, px.x));
  } else {
    const auto& src = located.src;
    switch (src.kind) {
      case kPadHighres:
        v = load(prm.highres + hs.offset(src.slot, c, src.y, src.x));
        break;
      case kPadLowres:
        v = load(prm.lowres + ls.offset(src.slot, c, src.y, src.x));
        break;
      case kPadHighresMean: {
        const scalar_t* q = prm.highres;
        const P a = load(q + hs.offset(src.slot, c, src.y, src.x));
        const P b = load(q + hs.offset(src.slot, c, src.y, src.x + 1));
        const P d = load(q + hs.offset(src.slot, c, src.y + 1, src.x));
        const P f = load(q + hs.offset(src.slot, c, src.y + 1, src.x + 1));
#pragma unroll
        for (int l = 0; l < kPack; ++l) {
          const acc_t sum = to_acc(a.v[l]) + to_acc(b.v[l]) + to_acc(d.v[l]) + to_acc(f.v[l]);
          v.v[l] = from_acc<scalar_t>(sum * acc_t(0.25));
        }
        break;
      }
      default:
#pragma unroll
        for (int l = 0; l < kPack; ++l) v.v[l] = prm.fill;
    }
  }
  reinterpret_cast<P*>(out_lowres ? prm.lowres_padded : prm.highres_padded)[px.e] = v;
}


template <typename scalar_t, typename Run>
void with_block_pad(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                    Strides4 lowres_strides, scalar_t* highres_padded, scalar_t* lowres_padded,
                    const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                    const BlockGrid& g, int64_t padding, bool replicate, double value,
                    bool channels_last, bool index32, int64_t hr_unit_in, int64_t hr_unit_out,
                    const scalar_t* pre_scale, const scalar_t* pre_shift, Run&& run) {
  // with units out, the high-res output is 4 Nh padded quarters of side h/2 + 2p
  const int64_t lp = g.hr_side / 2 + 2 * padding;
  const int64_t hp = hr_unit_out != 0 ? lp : g.hr_side + 2 * padding;
  const int64_t hr_total = (hr_unit_out != 0 ? 4 : 1) * g.num_highres * g.channels * hp * hp;
  const int64_t total = hr_total + g.num_lowres * g.channels * lp * lp;
  if (total == 0) return;
  const scalar_t fill = from_acc<scalar_t>(static_cast<acc_type<scalar_t>>(value));
  const std::initializer_list<PackCheck> tensors{{highres, highres_strides, g.num_highres == 0},
                                                 {lowres, lowres_strides, g.num_lowres == 0},
                                                 {highres_padded, Strides4{0, 1, 0, 0}, false},
                                                 {lowres_padded, Strides4{0, 1, 0, 0}, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, g.channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kWidth = decltype(pack)::value;
    using D = decltype(div);
    using Params = BlockPadParams<scalar_t, D>;
    const Params prm{highres, highres_strides, lowres, lowres_strides, highres_padded,
                     lowres_padded, hr_pos, lr_pos, block_map, GridIndexer<D>(g),
                     D(g.channels / kWidth), D(hp), D(lp), padding, replicate, fill,
                     hr_total / kWidth, hr_unit_in, hr_unit_out, pre_scale, pre_shift};
    using Located = LocatedPixel<typename D::index_t>;
    if constexpr (kWidth == 1) {
      run.template located<Params, Located, &locate_pad_source<scalar_t, decltype(layout)::value, D>,
                           &block_pad_element_at<scalar_t, D>>(prm, total);
    } else {
      run.template located<Params, Located, &locate_pad_source<scalar_t, true, D>,
                           &block_pad_packed_at<scalar_t, kWidth, D>>(prm, total / kWidth);
    }
  });
}

// ---------------------------------------------------------------------------------------
// The frame only: tiles [4Nh + Nl, C, u+2p, u+2p] whose interiors an op fused with its
// consumer's BlockPad has already written (upsample2x_units with a padded output) get their
// p-px frame from those interiors, in place, by BlockPad's rules: the result is
// block_pad_units of the interiors, and only the frame is read-modified (the interiors are
// the source, never written, so there is no race). One thread per frame pixel (and pack);
// each maps its frame index to the padded tile's element and runs BlockPad's element code.
// ---------------------------------------------------------------------------------------

template <typename scalar_t, typename D>
struct BlockPadRingParams {
  BlockPadParams<scalar_t, D> pad;  // highres / lowres: the interiors (highres as units)
  D ring_div;   // divides by the frame's pixels per tile, (u + 2p)^2 - u^2
  D band_div;   // divides by 2p, the frame's pixels in one interior row
  D width_div;  // divides by u + 2p
  int64_t hr_tiles;  // 4 Nh: the tiles before the low-res blocks'
};

// Row and column in the padded tile of frame pixel r: the p top rows, then the 2p side
// pixels of each interior row, then the p bottom rows, each row-major.
template <typename D>
SEGBLOCKS_HOST_DEVICE void ring_pixel(typename D::index_t r, typename D::index_t p, const D& width_div,
                                      const D& band_div, typename D::index_t& i, typename D::index_t& j) {
  using index_t = typename D::index_t;
  const index_t w = static_cast<index_t>(width_div.divisor), u = w - 2 * p;
  const index_t top = p * w, band = u * 2 * p;
  if (r < top) {
    i = width_div.div(r);
    j = r - i * w;
  } else if (r < top + band) {
    const index_t b = r - top, row = band_div.div(b), k = b - row * 2 * p;
    i = p + row;
    j = k < p ? k : k + u;
  } else {
    const index_t b = r - top - band, row = width_div.div(b);
    i = p + u + row;
    j = b - row * w;
  }
}

// The frame pass's two phases: where frame element `linear` lies and reads from, then its value.
template <typename scalar_t, bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE LocatedPixel<typename D::index_t> locate_ring_source(const BlockPadRingParams<scalar_t, D>& prm,
                                                                           int64_t linear) {
  // `linear` runs over [tiles, C, frame] (NCHW) or [tiles, frame, C / kPack] (NHWC)
  using index_t = typename D::index_t;
  const index_t e = static_cast<index_t>(linear);
  const D& cdiv = prm.pad.channels_div;
  const index_t packs = static_cast<index_t>(cdiv.divisor), frame = static_cast<index_t>(prm.ring_div.divisor);
  index_t t, c, r;
  if (kChannelsLast) {
    const index_t pixel = cdiv.div(e);
    c = e - pixel * packs;
    t = prm.ring_div.div(pixel);
    r = pixel - t * frame;
  } else {
    const index_t plane = prm.ring_div.div(e);
    r = e - plane * frame;
    t = cdiv.div(plane);
    c = plane - t * packs;
  }
  index_t i, j;
  const index_t p = static_cast<index_t>(prm.pad.padding);
  ring_pixel(r, p, prm.width_div, prm.band_div, i, j);
  const index_t w = static_cast<index_t>(prm.width_div.divisor), u = w - 2 * p;
  const index_t hr_tiles = static_cast<index_t>(prm.hr_tiles);
  // what locate_padded would find for this element, without its divisions: tile t is unit
  // t & 3 of high-res block t >> 2 (its window of the padded block), or low-res block
  // t - 4 Nh
  PaddedPixel<index_t> px;
  px.out_lowres = t >= hr_tiles;
  const index_t tt = px.out_lowres ? t - hr_tiles : t;
  px.e = kChannelsLast ? ((tt * w + i) * w + j) * packs + c : ((tt * packs + c) * w + i) * w + j;
  px.el.c = c;
  if (px.out_lowres) {
    px.el.k = tt;
    px.el.i = i;
    px.el.j = j;
  } else {
    px.el.k = t >> 2;
    px.el.i = i + ((t >> 1) & 1) * u;
    px.el.j = j + (t & 1) * u;
  }
  place_in_block(prm.pad, px);
  return with_source(prm.pad, px);
}

template <typename scalar_t, int kPack, typename D>
SEGBLOCKS_HOST_DEVICE void block_pad_ring_store(const BlockPadRingParams<scalar_t, D>& prm,
                                                const LocatedPixel<typename D::index_t>& located) {
  if constexpr (kPack == 1) {
    block_pad_element_at(prm.pad, located);
  } else {
    block_pad_packed_at<scalar_t, kPack>(prm.pad, located);
  }
}

// `padded` [4Nh + Nl, C, u+2p, u+2p], contiguous (NCHW, or NHWC if channels_last), its
// interiors written: fill the frames (mode constant with `value`, or replicate).
template <typename scalar_t, typename Run>
void with_block_pad_ring(scalar_t* padded, const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                         const BlockGrid& g, int64_t padding, bool replicate, double value, bool channels_last,
                         bool index32, Run&& run) {
  const int64_t u = g.hr_side / 2, w = u + 2 * padding, C = g.channels;
  const int64_t tiles = 4 * g.num_highres + g.num_lowres;
  const int64_t frame = w * w - u * u;
  const int64_t total = tiles * C * frame;
  if (total == 0) return;
  const Strides4 s = channels_last ? Strides4{w * w * C, 1, w * C, C} : Strides4{C * w * w, w * w, w, 1};
  const int64_t hr_total = 4 * g.num_highres * C * w * w;
  const scalar_t* interior = padded + padding * s.h + padding * s.w;
  const scalar_t fill = from_acc<scalar_t>(static_cast<acc_type<scalar_t>>(value));
  const std::initializer_list<PackCheck> tensors{{padded, s, false}};
  with_pack_layout_and_index<scalar_t>(channels_last, C, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kWidth = decltype(pack)::value;
    using D = decltype(div);
    const BlockPadParams<scalar_t, D> pad{interior, s, interior + 4 * g.num_highres * s.n, s, padded,
                                          padded + hr_total, hr_pos, lr_pos, block_map, GridIndexer<D>(g),
                                          D(C / kWidth), D(w), D(w), padding, replicate, fill, hr_total / kWidth,
                                          u, u, nullptr, nullptr};
    using Params = BlockPadRingParams<scalar_t, D>;
    const Params prm{pad, D(frame), D(2 * padding), D(w), 4 * g.num_highres};
    run.template located<Params, LocatedPixel<typename D::index_t>,
                         &locate_ring_source<scalar_t, decltype(layout)::value, D>,
                         &block_pad_ring_store<scalar_t, kWidth, D>>(prm, total / kWidth);
  });
}

template <typename scalar_t, typename D>
struct BlockPadBackwardParams {
  const scalar_t* grad_hr_padded;
  Strides4 grad_hr_padded_strides;
  const scalar_t* grad_lr_padded;
  Strides4 grad_lr_padded_strides;
  scalar_t* grad_highres;  // [Nh, C, h, h], contiguous in the output order
  scalar_t* grad_lowres;   // [Nl, C, h/2, h/2], same order
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
  GridIndexer<D> grid;
  D channels_div;
  int64_t padding;
  bool replicate;
  int64_t hr_total;  // elements of grad_highres; the following ones are grad_lowres's
};

template <typename scalar_t, typename index_t>
struct SumPadReaders {  // visit_pad_readers callback: sums the gradients of one channel
  const scalar_t* grad_hr_padded;
  const scalar_t* grad_lr_padded;
  StridesT<index_t> ghs, gls;
  index_t channel;
  acc_type<scalar_t> sum;
  SEGBLOCKS_HOST_DEVICE void operator()(bool out_lowres, index_t slot, index_t i, index_t j,
                                        float weight) {
    const scalar_t g = out_lowres ? grad_lr_padded[gls.offset(slot, channel, i, j)]
                                  : grad_hr_padded[ghs.offset(slot, channel, i, j)];
    sum += static_cast<acc_type<scalar_t>>(weight) * to_acc(g);
  }
};

template <typename scalar_t, bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE void block_pad_backward_element(const BlockPadBackwardParams<scalar_t, D>& prm,
                                                      int64_t linear) {
  using index_t = typename D::index_t;
  const bool in_lowres = linear >= prm.hr_total;
  const index_t e = static_cast<index_t>(in_lowres ? linear - prm.hr_total : linear);
  const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div, prm.grid.side_div(in_lowres));
  const auto cell = cell_of_position(
      static_cast<index_t>(in_lowres ? prm.lr_pos[el.k] : prm.hr_pos[el.k]), prm.grid);
  SumPadReaders<scalar_t, index_t> readers{prm.grad_hr_padded, prm.grad_lr_padded,
                                           StridesT<index_t>(prm.grad_hr_padded_strides),
                                           StridesT<index_t>(prm.grad_lr_padded_strides), el.c, 0};
  visit_pad_readers(prm.block_map, prm.grid, cell, in_lowres, el.i, el.j,
                    static_cast<index_t>(prm.padding), prm.replicate, readers);
  (in_lowres ? prm.grad_lowres : prm.grad_highres)[e] = from_acc<scalar_t>(readers.sum);
}

template <typename scalar_t, typename Run>
void with_block_pad_backward(const scalar_t* grad_hr_padded, Strides4 grad_hr_padded_strides,
                             const scalar_t* grad_lr_padded, Strides4 grad_lr_padded_strides,
                             scalar_t* grad_highres, scalar_t* grad_lowres, const int64_t* hr_pos,
                             const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& g,
                             int64_t padding, bool replicate, bool channels_last, bool index32,
                             Run&& run) {
  const int64_t h = g.hr_side;
  const int64_t hr_total = g.num_highres * g.channels * h * h;
  const int64_t total = hr_total + g.num_lowres * g.channels * (h / 2) * (h / 2);
  if (total == 0) return;
  with_layout_and_index(channels_last, index32, [&](auto layout_tag, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = BlockPadBackwardParams<scalar_t, D>;
    const Params prm{grad_hr_padded, grad_hr_padded_strides, grad_lr_padded, grad_lr_padded_strides,
                     grad_highres, grad_lowres, hr_pos, lr_pos, block_map, GridIndexer<D>(g),
                     D(g.channels), padding, replicate, hr_total};
    run.template operator()<Params, &block_pad_backward_element<scalar_t, decltype(layout_tag)::value, D>>(
        prm, total);
  });
}

}  // namespace cuda
}  // namespace segblocks
