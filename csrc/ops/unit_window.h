// Reading a unit's padded tile without writing it: the ops fused with BlockPad on units
// (max_pool_units, upsample2x_units, conv3x3_units) see each unit as block_pad_units would
// pad it, and look every halo pixel up with pad_source (BlockPad's rules) instead of
// reading a copy.
//
// Units: [4Nh + Nl, C, u, u], unit 4k + q being quarter q of high-res block k (u = h/2),
// then the low-res blocks. The padded tile of quarter q is the window of its padded
// block at the quarter's offset ((q >> 1) * u, (q & 1) * u).
//
// Torch-free and CUDA-free: the CPU kernels and the CUDA kernels run the same code, with
// the dtype conversions supplied by `Cvt` (CpuCvt / CudaCvt).
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

// kPack consecutive channels of one pixel as acc_t (kPack = 1: one element; with kPack > 1
// the tensors are channels_last and the pack is one aligned load).
template <typename Cvt, int kPack>
struct AccPack {
  using scalar_t = typename Cvt::scalar_t;
  using acc_t = typename Cvt::acc_t;
  acc_t v[kPack];

  SEGBLOCKS_HOST_DEVICE void load(const scalar_t* p) {
    const auto x = load_pack<scalar_t, kPack>(p);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) v[l] = Cvt::to_acc(x.v[l]);
  }
  // BlockPad's 2x2 mean of high-res pixels (row by row, avg_pool2d's summation order),
  // rounded to the dtype as BlockPad's output would be
  SEGBLOCKS_HOST_DEVICE void load_mean(const scalar_t* p00, const scalar_t* p01, const scalar_t* p10,
                                       const scalar_t* p11) {
    set_mean(load_pack<scalar_t, kPack>(p00), load_pack<scalar_t, kPack>(p01), load_pack<scalar_t, kPack>(p10),
             load_pack<scalar_t, kPack>(p11));
  }
  // the same of four packs already read (row 0 left, right, row 1 left, right)
  SEGBLOCKS_HOST_DEVICE void set_mean(const Pack<scalar_t, kPack>& a, const Pack<scalar_t, kPack>& b,
                                      const Pack<scalar_t, kPack>& c, const Pack<scalar_t, kPack>& d) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      const acc_t sum = Cvt::to_acc(a.v[l]) + Cvt::to_acc(b.v[l]) + Cvt::to_acc(c.v[l]) + Cvt::to_acc(d.v[l]);
      v[l] = Cvt::to_acc(Cvt::round(sum * static_cast<acc_t>(0.25)));
    }
  }
  SEGBLOCKS_HOST_DEVICE void fill(acc_t value) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) v[l] = value;
  }
  SEGBLOCKS_HOST_DEVICE void store(scalar_t* out) const {
    Pack<scalar_t, kPack> o;
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) o.v[l] = Cvt::round(v[l]);
    *reinterpret_cast<Pack<scalar_t, kPack>*>(out) = o;
  }
};

// The identity on a pack (UnitWindow::fetch_values without a prologue).
struct NoPackOp {
  template <typename P>
  SEGBLOCKS_HOST_DEVICE void operator()(P&) const {}
};

// What an op fused with BlockPad on units reads: the blocks and where they lie.
template <typename scalar_t>
struct UnitsInput {
  const scalar_t* highres;
  Strides4 highres_strides;
  int64_t hr_unit_in;  // 0: highres is [Nh, C, h, h]; h/2: it is stored as units
  const scalar_t* lowres;
  Strides4 lowres_strides;
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
};

// The padded tile of one unit (channels [ch, ch + kPack)), read through BlockPad's rules.
template <typename Cvt, int kPack, typename D>
struct UnitWindow {
  using index_t = typename D::index_t;
  using scalar_t = typename Cvt::scalar_t;
  const scalar_t* highres;
  HrStridesT<index_t> hs;
  const scalar_t* lowres;
  StridesT<index_t> ls;
  const int32_t* block_map;
  const GridIndexer<D>& grid;
  bool lowres_unit;
  index_t k;       // the unit's block: low-res slot, or high-res slot of its quarter
  index_t i0, j0;  // the tile's origin in its padded block
  index_t ch, padding, side;
  bool replicate;
  // the block's grid position is pos[k] (hr_pos or lr_pos); its cell is decoded where a
  // halo pixel is looked up only (a load and two divisions that a tile's inner pixels never
  // need: most outputs of upsample2x_units and max_pool_units read no halo)
  const int64_t* pos;

  // unit `unit` of [4Nh + Nl] units, padded by `padding`
  SEGBLOCKS_HOST_DEVICE UnitWindow(const UnitsInput<scalar_t>& in, const GridIndexer<D>& grid_, int64_t num_hr_units,
                                   index_t unit, index_t ch_, int64_t padding_, bool replicate_)
      : highres(in.highres),
        hs(in.highres_strides, in.hr_unit_in),
        lowres(in.lowres),
        ls(in.lowres_strides),
        block_map(in.block_map),
        grid(grid_),
        lowres_unit(unit >= static_cast<index_t>(num_hr_units)),
        k(lowres_unit ? unit - static_cast<index_t>(num_hr_units) : unit / 4),
        ch(ch_),
        padding(static_cast<index_t>(padding_)),
        side(grid_.side(lowres_unit)),
        replicate(replicate_),
        pos(lowres_unit ? in.lr_pos : in.hr_pos) {
    const index_t u = grid_.hr_side / 2;
    const index_t q = lowres_unit ? 0 : unit - 4 * k;
    i0 = (q >> 1) * u;
    j0 = (q & 1) * u;
  }

  SEGBLOCKS_HOST_DEVICE GridCell<index_t> cell() const {
    return cell_of_position(static_cast<index_t>(pos[k]), grid);
  }

  SEGBLOCKS_HOST_DEVICE const scalar_t* hr_at(index_t slot, index_t y, index_t x) const {
    return highres + hs.offset(slot, ch, y, x);
  }
  SEGBLOCKS_HOST_DEVICE const scalar_t* lr_at(index_t slot, index_t y, index_t x) const {
    return lowres + ls.offset(slot, ch, y, x);
  }

  // Pixel (y, x) of the unit itself (unit coordinates: 0 <= y, x < u; tile pixel
  // (y + padding, x + padding)), and the element steps between the unit's rows and columns:
  // a window inside the unit is read from one base, with no lookup per pixel.
  SEGBLOCKS_HOST_DEVICE const scalar_t* own_at(index_t y, index_t x) const {
    return lowres_unit ? lr_at(k, y, x) : hr_at(k, i0 + y, j0 + x);
  }
  SEGBLOCKS_HOST_DEVICE index_t own_row_step() const { return lowres_unit ? ls.h : hs.h; }
  SEGBLOCKS_HOST_DEVICE index_t own_col_step() const { return lowres_unit ? ls.w : hs.w; }

  // Where pixel (ti, tj) of the padded tile comes from: the unit's own block (kind
  // kPadHighres / kPadLowres at the block's slot), a neighbour, or the constant border.
  SEGBLOCKS_HOST_DEVICE PadSource<index_t> locate(index_t ti, index_t tj) const {
    const index_t i = i0 + ti, j = j0 + tj;  // padded-block coordinates
    const index_t y = i - padding, x = j - padding;
    if (y >= 0 && y < side && x >= 0 && x < side) {  // the block itself
      return PadSource<index_t>{lowres_unit ? kPadLowres : kPadHighres, k, y, x};
    }
    return pad_source(block_map, grid, cell(), lowres_unit, i, j, padding, replicate);
  }

  // Channels [ch, ch + kPack) of `src` into `v`; false (v untouched) for the constant border.
  SEGBLOCKS_HOST_DEVICE bool fetch(const PadSource<index_t>& src, AccPack<Cvt, kPack>& v) const {
    switch (src.kind) {
      case kPadHighres:
        v.load(hr_at(src.slot, src.y, src.x));
        return true;
      case kPadLowres:
        v.load(lr_at(src.slot, src.y, src.x));
        return true;
      case kPadHighresMean:
        v.load_mean(hr_at(src.slot, src.y, src.x), hr_at(src.slot, src.y, src.x + 1),
                    hr_at(src.slot, src.y + 1, src.x), hr_at(src.slot, src.y + 1, src.x + 1));
        return true;
      default:
        return false;
    }
  }

  // The same as stored values (what block_pad_units would write): a plain copy unless the
  // source is a 2x2 mean; zeros for the constant border (conv3x3_units' zero padding).
  // `op(pack)` transforms every pack read, before the mean (a prologue: block_pad_units'
  // pre_scale / pre_shift); the border stays zero.
  template <typename Op = NoPackOp>
  SEGBLOCKS_HOST_DEVICE void fetch_values(const PadSource<index_t>& src, scalar_t* out, const Op& op = Op{}) const {
    using P = Pack<scalar_t, kPack>;
    const auto read = [&](const scalar_t* p) {
      P x = load_pack<scalar_t, kPack>(p);
      op(x);
      return x;
    };
    switch (src.kind) {
      case kPadHighres:
        *reinterpret_cast<P*>(out) = read(hr_at(src.slot, src.y, src.x));
        return;
      case kPadLowres:
        *reinterpret_cast<P*>(out) = read(lr_at(src.slot, src.y, src.x));
        return;
      default: {
        AccPack<Cvt, kPack> v;
        if (src.kind == kPadHighresMean) {
          v.set_mean(read(hr_at(src.slot, src.y, src.x)), read(hr_at(src.slot, src.y, src.x + 1)),
                     read(hr_at(src.slot, src.y + 1, src.x)), read(hr_at(src.slot, src.y + 1, src.x + 1)));
        } else {
          v.fill(0);
        }
        v.store(out);
      }
    }
  }

  // Pixel (ti, tj) of the padded tile into `v`; false (v untouched) where it is the
  // constant image border.
  SEGBLOCKS_HOST_DEVICE bool read(index_t ti, index_t tj, AccPack<Cvt, kPack>& v) const {
    return fetch(locate(ti, tj), v);
  }
};

}  // namespace segblocks
