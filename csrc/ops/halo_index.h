// The halo index of units (segblocks_core/halo.py, the reference; its fixed form): where each
// pixel of every unit's 1-px BlockPad-ed tile comes from, as a row of the source
// [units' pixels | mean rows | zero row], without writing the tiles.
//
//   halo_index(hr_pos, lr_pos, block_map, side) -> (index [T, s+2, s+2] int32,
//                                                   mean_rows [Nl * (4s+4), 4] int32)
//
// T = 4 Nh + Nl units of side s (high-res blocks 2s px, quartered, then the low-res blocks),
// tile t's pixel (y, x) is source row t*s*s + y*s + x. A frame pixel reads what BlockPad would
// put there (pad_source, block_indexing.h: a neighbour's pixel at the same resolution, the
// nearest low-res pixel, or zero outside the image: the zero row). A low-res block's frame
// pixel over a high-res block is the 2x2 mean of high-res pixels: mean row
// unit_rows + l * (4s+4) + r for frame pixel r of low-res block l (r in ring order: top row,
// bottom row, left column, right column), whose four unit rows mean_rows holds; the other
// frame pixels of low-res blocks leave their mean row unused (the zero row four times), so
// every shape depends on the block counts only (a CUDA graph can rebuild it each frame).
// zero_row = unit_rows + Nl * (4s+4).
//
// Torch-free and CUDA-free: one element per index entry, on the CPU (ops/cpu) and the GPU
// (ops/cuda); the element of a low-res tile's frame pixel also writes that pixel's mean row.
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

template <typename D>
struct HaloIndexParams {
  using index_t = typename D::index_t;
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
  GridIndexer<D> g;  // hr_side = 2 * side
  int32_t* index;
  int32_t* mean_rows;
  index_t side, num_highres, unit_rows, zero_row;
  D tile_div;   // (side + 2)^2: entries of a tile
  D width_div;  // side + 2
};

// The parameters for units of side g.hr_side / 2 (host side; D: PlainDivider<int64_t> on the
// CPU, FastDivider where everything fits int32 on CUDA).
template <typename D>
inline HaloIndexParams<D> make_halo_index_params(const int64_t* hr_pos, const int64_t* lr_pos,
                                                 const int32_t* block_map, const BlockGrid& g, int32_t* index,
                                                 int32_t* mean_rows) {
  using index_t = typename D::index_t;
  const int64_t side = g.hr_side / 2, w = side + 2, tiles = 4 * g.num_highres + g.num_lowres;
  HaloIndexParams<D> prm{};
  prm.hr_pos = hr_pos;
  prm.lr_pos = lr_pos;
  prm.block_map = block_map;
  prm.g = GridIndexer<D>(g);
  prm.index = index;
  prm.mean_rows = mean_rows;
  prm.side = static_cast<index_t>(side);
  prm.num_highres = static_cast<index_t>(g.num_highres);
  prm.unit_rows = static_cast<index_t>(tiles * side * side);
  prm.zero_row = static_cast<index_t>(tiles * side * side + g.num_lowres * (4 * side + 4));
  prm.tile_div = D(w * w);
  prm.width_div = D(w);
  return prm;
}

// Frame pixel (py, px) of a padded tile of side s+2 in ring order.
template <typename index_t>
SEGBLOCKS_HOST_DEVICE index_t halo_ring_slot(index_t py, index_t px, index_t side) {
  if (py == 0) return px;
  if (py == side + 1) return side + 2 + px;
  if (px == 0) return 2 * (side + 2) + py - 1;
  return 2 * (side + 2) + side + py - 1;
}

// The source row of high-res block `slot`'s pixel (y, x) (block coordinates, side 2s): its
// unit's row.
template <typename index_t>
SEGBLOCKS_HOST_DEVICE index_t halo_highres_row(index_t slot, index_t y, index_t x, index_t side) {
  const index_t qy = y >= side ? 1 : 0, qx = x >= side ? 1 : 0;
  return ((4 * slot + 2 * qy + qx) * side + (y - qy * side)) * side + (x - qx * side);
}

// Index entry e of [T, s+2, s+2].
template <typename D>
SEGBLOCKS_HOST_DEVICE void halo_index_element(const HaloIndexParams<D>& prm, int64_t e64) {
  using index_t = typename D::index_t;
  const index_t e = static_cast<index_t>(e64);
  const index_t s = prm.side, w = s + 2;
  const index_t t = prm.tile_div.div(e);
  const index_t r = e - t * w * w;
  const index_t py = prm.width_div.div(r);
  const index_t px = r - py * w;
  const index_t nh4 = 4 * prm.num_highres;
  const bool lowres = t >= nh4;
  index_t row;
  if (py >= 1 && py <= s && px >= 1 && px <= s) {
    row = (t * s + py - 1) * s + px - 1;  // the unit's own pixel
  } else {
    index_t i = py, j = px, slot;
    if (!lowres) {
      slot = t / 4;  // the unit's block, and its quadrant's offset in the block's padded tile
      const index_t q = t - 4 * slot;
      i += (q / 2) * s;
      j += (q % 2) * s;
    } else {
      slot = t - nh4;
    }
    const int64_t pos = lowres ? prm.lr_pos[slot] : prm.hr_pos[slot];
    const GridCell<index_t> cell = cell_of_position(static_cast<index_t>(pos), prm.g);
    const PadSource<index_t> src = pad_source(prm.block_map, prm.g, cell, lowres, i, j, index_t(1), false);
    index_t quad[4] = {prm.zero_row, prm.zero_row, prm.zero_row, prm.zero_row};
    switch (src.kind) {
      case kPadHighres:
        row = halo_highres_row(src.slot, src.y, src.x, s);
        break;
      case kPadLowres:
        row = ((nh4 + src.slot) * s + src.y) * s + src.x;
        break;
      case kPadHighresMean:  // a low-res tile's frame over a high-res block
        SEGBLOCKS_UNROLL
        for (int k = 0; k < 4; ++k) quad[k] = halo_highres_row(src.slot, src.y + k / 2, src.x + k % 2, s);
        row = prm.unit_rows + slot * (4 * s + 4) + halo_ring_slot(py, px, s);
        break;
      default:  // outside the image
        row = prm.zero_row;
    }
    if (lowres) {  // this frame pixel's mean row: its quad, or unused
      int32_t* m = prm.mean_rows + 4 * (static_cast<int64_t>(slot) * (4 * s + 4) + halo_ring_slot(py, px, s));
      SEGBLOCKS_UNROLL
      for (int k = 0; k < 4; ++k) m[k] = static_cast<int32_t>(quad[k]);
    }
  }
  prm.index[e64] = static_cast<int32_t>(row);
}

// halo_means_(source [rows, C], mean_rows [B, 4], unit_rows), in place: source row
// unit_rows + b becomes the mean of its quad's four unit rows (their sum in the accumulation
// type in quad order, times 0.25, rounded once: BlockPad's rounding, block_pad.cuh), a quad
// entry at or past unit_rows (a fixed index's unused mean rows: the zero row) counting as
// zero; row unit_rows + B (the zero row) becomes zeros. Rows before unit_rows (the units'
// pixels, a producer's output) are read, never written. One element per kPack channels of
// one written row.
template <typename scalar_t>
struct HaloMeansParams {
  scalar_t* source;  // [rows, channels] contiguous
  const int32_t* mean_rows;
  int64_t channels, unit_rows, num_means;
};

template <typename Cvt, int kPack>
SEGBLOCKS_HOST_DEVICE void halo_means_element(const HaloMeansParams<typename Cvt::scalar_t>& prm, int64_t pack) {
  using scalar_t = typename Cvt::scalar_t;
  using acc_t = typename Cvt::acc_t;
  using P = Pack<scalar_t, kPack>;
  const int64_t e = pack * kPack;
  const int64_t b = e / prm.channels, c = e - b * prm.channels;
  acc_t sum[kPack];
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) sum[l] = acc_t(0);
  if (b < prm.num_means) {
    SEGBLOCKS_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int64_t q = prm.mean_rows[4 * b + k];
      if (q >= prm.unit_rows) continue;  // the zero row
      const P v = load_pack<scalar_t, kPack>(prm.source + q * prm.channels + c);
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kPack; ++l) sum[l] += Cvt::to_acc(v.v[l]);
    }
  }
  P out;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) out.v[l] = Cvt::round(sum[l] * acc_t(0.25));
  *reinterpret_cast<P*>(prm.source + (prm.unit_rows + b) * prm.channels + c) = out;
}

}  // namespace segblocks
