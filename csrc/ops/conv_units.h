// 3x3 convolution (stride 1 or 2) on units with BlockPad's halo read in the same pass: the
// tiles block_pad_units would write are gathered straight into the GEMM's operand tiles.
//
//   conv3x3_units(highres, lowres, hr_pos, lr_pos, block_map, weight [Co, Ci, 3, 3], bias,
//                 residual, relu, quartered, stride, pre_scale, pre_shift)
//       -> [4Nh + Nl, Co, uo, uo] (channels_last)
//   equals  act(F.conv2d(block_pad_units(highres, lowres, ..., 1, "constant", 0, quartered,
//                                        pre_scale, pre_shift),
//                        weight, bias, stride) + residual),  act = ReLU if relu else identity
//   with the sum in float32 and one rounding to the dtype at the end; uo = (u - 1) / stride + 1.
//   The optional prologue relu(x * pre_scale + pre_shift) (an eval BatchNorm + ReLU) applies
//   to every value read, rounded to the dtype as BlockPad's output would be.
//
// An implicit GEMM: M = units * uo * uo output pixels, N = Co, K = 9 * Ci. A work item is
// a kConvBM x kConvBN output tile (and K split); its output pixels are whole units, or
// whole rows of one unit (ConvTiling), so their 3x3 windows lie in a few padded tiles:
// per chunk of kConvBK input channels, the thread block stages those padded tiles (the
// "halo tile", HP pixels) in shared memory, each pixel read through BlockPad's rules
// (interior pixels as plain copies, halo pixels through pad_source, whose answer a small
// kernel writes to a table first: conv_units_table_element), together with the chunk's
// weights for all nine taps (a "slab": channels_last order, [Co][ky][kx][Ci], K contiguous
// per output channel). The nine taps then read the A operand straight out of the halo
// tile: output row r at tap (dy, dx) is halo pixel conv_tile_halo(r) + dy * cols + dx,
// so no A tile is ever copied. Thread blocks are persistent: each runs work items
// blockIdx.x, + gridDim.x, ... and stages the next chunk (of the same or the next item)
// while it multiplies the current one.
// The epilogue adds bias and residual, applies the ReLU and writes 16-byte packs.
//
// This header holds the per-thread pieces (tiling, halo sources and gather, weight slab,
// epilogue), torch-free and CUDA-free; ops/cuda/conv_units_kernel.cu runs them around the
// tensor cores (ldmatrix + mma.sync), and test/cuda_kernels_host.cu runs the same pieces
// around a scalar multiply on the CPU.
//
// Requirements (the launcher checks them; the executor falls back to BlockPad + cuDNN
// otherwise): half or bfloat16; every tensor channels_last and 16-byte aligned;
// Ci % kConvBK == 0; Co % kConvBN == 0; uo <= kConvMaxSide.
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"
#include "ops/unit_window.h"

namespace segblocks {

constexpr int kConvBM = 128;       // output pixels per tile
constexpr int kConvBN = 64;        // output channels per tile
constexpr int kConvBK = 16;        // input channels per chunk (all nine taps): one k16 step per tap
constexpr int kConvThreads = 256;  // 8 warps, each a 32 x 32 eighth of the output tile (4 x 2)
constexpr int kConvPack = 8;       // 16 bytes of half / bfloat16
constexpr int kConvPitch = kConvBK + 8;   // smem pitch (elements) of a halo pixel and a weight row
constexpr int kConvCPitch = kConvBN + 4;  // smem row pitch of the float32 output tile
constexpr int kConvPacksPerPixel = kConvBK / kConvPack;  // 16-byte packs of a pixel (or weight row) per chunk
constexpr int kConvSlabPacks = 9 * kConvBN * kConvPacksPerPixel;  // packs of a chunk's weights (9 taps)
constexpr int64_t kConvMaxSide = 64;  // output units of at most this many pixels a side
// halo tiles of a full kConvBM-pixel tile above this many pixels take half the pixels per
// tile instead (units of 1 or 2 px: nine or more halo pixels per output pixel)
constexpr int64_t kConvMaxHaloPixels = 640;

// How output pixels group into tiles of kConvBM rows (`capacity` of them used):
//  * uo * uo <= capacity: `units` whole units per tile (capacity / (uo * uo) of them);
//  * otherwise `out_rows` whole output rows of one unit per tile (capacity / uo of them),
//    `tiles_per_unit` tiles per unit.
// The halo tile of a tile holds, per unit, `rows` x `cols` pixels of its padded tile
// (padding 1), from padded row first_row(tile) on; HP = units * rows * cols. capacity is
// kConvBM, or half that where the halo tile would exceed kConvMaxHaloPixels.
struct ConvTiling {
  int64_t uo, stride, num_units;
  int64_t capacity;
  int64_t units;           // units per tile
  int64_t out_rows;        // output rows of a unit per tile
  int64_t tiles_per_unit;  // 1 where units > 1
  int64_t rows, cols;      // halo rows and columns per unit
  int64_t halo_pixels;     // HP
  int64_t m_tiles;
};

// The tiling of U = num_units units of u x u pixels convolved with stride 1 or 2
// (uo = (u - 1) / stride + 1 <= kConvMaxSide).
SEGBLOCKS_HOST_DEVICE ConvTiling conv_tiling(int64_t num_units, int64_t u, int64_t stride) {
  ConvTiling t{};
  t.uo = (u - 1) / stride + 1;
  t.stride = stride;
  t.num_units = num_units;
  for (t.capacity = kConvBM;; t.capacity /= 2) {
    if (t.uo * t.uo <= t.capacity) {
      t.units = t.capacity / (t.uo * t.uo);
      t.out_rows = t.uo;
      t.tiles_per_unit = 1;
      t.m_tiles = (num_units + t.units - 1) / t.units;
    } else {
      t.units = 1;
      t.out_rows = t.capacity / t.uo;
      t.tiles_per_unit = (t.uo + t.out_rows - 1) / t.out_rows;
      t.m_tiles = num_units * t.tiles_per_unit;
    }
    t.rows = (t.out_rows - 1) * stride + 3;
    t.cols = (t.uo - 1) * stride + 3;
    t.halo_pixels = t.units * t.rows * t.cols;
    if (t.halo_pixels <= kConvMaxHaloPixels || t.capacity == kConvBM / 2) return t;
  }
}

// Bytes of the halo source table (ConvUnitsParams::table) for either index type.
inline int64_t conv_units_table_bytes(const ConvTiling& t) {
  return t.m_tiles * t.halo_pixels * static_cast<int64_t>(sizeof(PadSource<int64_t>));
}

// Tile m_tile's first unit and its first output row within that unit.
struct ConvTileOrigin {
  int64_t unit0, oy0;
};

SEGBLOCKS_HOST_DEVICE ConvTileOrigin conv_tile_origin(const ConvTiling& t, int64_t m_tile) {
  if (t.tiles_per_unit == 1) return ConvTileOrigin{m_tile * t.units, 0};
  const int64_t unit = m_tile / t.tiles_per_unit;
  return ConvTileOrigin{unit, (m_tile - unit * t.tiles_per_unit) * t.out_rows};
}

// The output pixels of tile m_tile: GEMM rows [base, base + count), one per tile row
// r < count (whole units, or whole rows of one unit, lie contiguously in the output).
struct ConvTileSpan {
  int64_t base, count;
};

SEGBLOCKS_HOST_DEVICE ConvTileSpan conv_tile_span(const ConvTiling& t, int64_t m_tile) {
  const ConvTileOrigin o = conv_tile_origin(t, m_tile);
  if (t.tiles_per_unit == 1) {
    const int64_t left = t.num_units - o.unit0;
    return ConvTileSpan{o.unit0 * t.uo * t.uo, (t.units < left ? t.units : left) * t.uo * t.uo};
  }
  const int64_t left = t.uo - o.oy0;
  return ConvTileSpan{(o.unit0 * t.uo + o.oy0) * t.uo, (t.out_rows < left ? t.out_rows : left) * t.uo};
}

// The halo pixel at the top left of row r's window (r in 0..kConvBM; its output pixel is
// conv_tile_span(t, m_tile).base + r); 0 for rows past the span, whose sums are dropped.
SEGBLOCKS_HOST_DEVICE int64_t conv_tile_halo(const ConvTiling& t, int64_t m_tile, int64_t r) {
  if (r >= conv_tile_span(t, m_tile).count) return 0;
  const int64_t per_unit = t.out_rows * t.uo;  // tile rows per unit
  const int64_t local = r / per_unit, rem = r - local * per_unit;
  const int64_t oyl = rem / t.uo, ox = rem - oyl * t.uo;
  return local * t.rows * t.cols + oyl * t.stride * t.cols + ox * t.stride;
}

// The halo pixel offset of tap (dy, dx) (added to a row's window origin).
SEGBLOCKS_HOST_DEVICE int64_t conv_tap_offset(const ConvTiling& t, int64_t dy, int64_t dx) {
  return dy * t.cols + dx;
}

template <typename scalar_t, typename D>
struct ConvUnitsParams {
  UnitsInput<scalar_t> in;
  const scalar_t* weight;    // [Co, 3, 3, Ci] contiguous (a channels_last [Co, Ci, 3, 3])
  const scalar_t* bias;      // [Co] or null
  const scalar_t* residual;  // [U, uo, uo, Co] contiguous (channels_last units) or null
  scalar_t* out;             // [U, uo, uo, Co]
  GridIndexer<D> grid;
  ConvTiling tiling;
  // [m_tiles, HP]: where each halo pixel of each tile comes from (conv_units_table_element)
  PadSource<typename D::index_t>* table;
  int64_t num_hr_units;  // 4 Nh
  int64_t rows;          // U * uo * uo (GEMM M)
  int64_t cin, cout;
  bool relu;
  const scalar_t* pre_scale;  // [Ci] or null (no prologue), with pre_shift
  const scalar_t* pre_shift;
  // split-K: work item (m, n, z) sums chunks [z * chunks_per_split, (z + 1) * chunks_per_split);
  // with splits > 1 it writes its float32 tile to partial [splits, rows, Co] and
  // conv_units_reduce_element sums the splits in order and finishes (deterministic)
  int64_t splits;
  int64_t chunks_per_split;
  float* partial;
};

// The chunks [first, last) of split `split`.
struct ConvChunks {
  int64_t first, last;
};

template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE ConvChunks conv_units_split_chunks(const ConvUnitsParams<scalar_t, D>& prm, int64_t split) {
  const int64_t chunks = prm.cin / kConvBK;
  const int64_t first = split * prm.chunks_per_split;
  const int64_t last = first + prm.chunks_per_split;
  return ConvChunks{first < chunks ? first : chunks, last < chunks ? last : chunks};
}

// The work items: m_tiles x Co / kConvBN tiles x splits.
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE int64_t conv_units_items(const ConvUnitsParams<scalar_t, D>& prm) {
  return prm.tiling.m_tiles * (prm.cout / kConvBN) * prm.splits;
}

// A work item (tile m_tile x n_tile of split `split`): items are numbered m fastest.
struct ConvItem {
  int64_t m_tile, n_tile, split;
};

template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE ConvItem conv_units_item(const ConvUnitsParams<scalar_t, D>& prm, int64_t item) {
  const int64_t m_tiles = prm.tiling.m_tiles, n_tiles = prm.cout / kConvBN;
  const int64_t m = item % m_tiles, rest = item / m_tiles;
  return ConvItem{m, rest % n_tiles, rest / n_tiles};
}

// K splits (in whole chunks) for `tiles` output tiles of `chunks` chunks on `sms`
// multiprocessors: enough work items for about 2 per multiprocessor (the deep layers have
// few, long tiles); 1 where the tiles alone fill the GPU.
SEGBLOCKS_HOST_DEVICE int64_t conv_units_auto_splits(int64_t tiles, int64_t chunks, int64_t sms) {
  const int64_t want = (2 * sms + tiles - 1) / tiles;
  const int64_t splits = want < chunks ? want : chunks;
  return splits > 1 ? splits : 1;
}

// Split-K in whole chunks: at most `splits` (>= 1) splits of equal length but the last,
// none empty.
struct ConvSplitPlan {
  int64_t splits, chunks_per_split;
};

SEGBLOCKS_HOST_DEVICE ConvSplitPlan conv_units_split_plan(int64_t chunks, int64_t splits) {
  const int64_t s = splits < chunks ? splits : chunks;
  const int64_t per = (chunks + s - 1) / s;
  return ConvSplitPlan{(chunks + per - 1) / per, per};
}

// The prologue on a pack of channels [c, c + kConvPack): relu(x * scale + shift), rounded to
// the dtype (as addcmul + relu_ leave it; NaN stays NaN).
template <typename Cvt>
struct ConvPrologue {
  using scalar_t = typename Cvt::scalar_t;
  using acc_t = typename Cvt::acc_t;
  const scalar_t* scale;
  const scalar_t* shift;
  int64_t c;
  SEGBLOCKS_HOST_DEVICE void operator()(Pack<scalar_t, kConvPack>& x) const {
    const auto s = load_pack<scalar_t, kConvPack>(scale + c), b = load_pack<scalar_t, kConvPack>(shift + c);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) {
      const acc_t a = Cvt::to_acc(b.v[l]) + Cvt::to_acc(x.v[l]) * Cvt::to_acc(s.v[l]);
      x.v[l] = Cvt::round(a < acc_t(0) ? acc_t(0) : a);
    }
  }
};

// Where halo pixel hp of M tile m_tile comes from (BlockPad's rules, looked up once per
// kernel): the constant border for pixels of units past the last and rows past the padded
// tile (read by invalid rows only).
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE PadSource<typename D::index_t> conv_halo_source(
    const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t m_tile, int64_t hp) {
  using index_t = typename D::index_t;
  const ConvTiling& t = prm.tiling;
  const ConvTileOrigin o = conv_tile_origin(t, m_tile);
  const int64_t per_unit = t.rows * t.cols;
  const int64_t local = hp / per_unit, rem = hp - local * per_unit;
  const int64_t py = o.oy0 * t.stride + rem / t.cols, px = rem % t.cols;
  const int64_t unit = o.unit0 + local;
  const int64_t padded_side = prm.grid.hr_side / 2 + 2;
  if (unit >= t.num_units || py >= padded_side) return PadSource<index_t>{kPadConstant, 0, 0, 0};
  const UnitWindow<Cvt, kConvPack, D> win(prm.in, prm.grid, prm.num_hr_units, static_cast<index_t>(unit), 0, 1,
                                          false);
  return win.locate(static_cast<index_t>(py), static_cast<index_t>(px));
}

// Entry `linear` of the source table: halo pixel linear % HP of tile linear / HP.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_table_element(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm,
                                                    int64_t linear) {
  const int64_t hp_count = prm.tiling.halo_pixels;
  const int64_t m_tile = linear / hp_count;
  prm.table[linear] = conv_halo_source<Cvt, D>(prm, m_tile, linear - m_tile * hp_count);
}

// Reads the channel packs of halo pixels for one chunk. Made once per thread (its
// UnitWindow only supplies the tensors and strides: a PadSource names its block itself).
template <typename Cvt, typename D>
struct ConvHaloGather {
  using scalar_t = typename Cvt::scalar_t;
  using index_t = typename D::index_t;
  UnitWindow<Cvt, kConvPack, D> win;
  const scalar_t* pre_scale;
  const scalar_t* pre_shift;

  SEGBLOCKS_HOST_DEVICE ConvHaloGather(const ConvUnitsParams<scalar_t, D>& prm)
      : win(prm.in, prm.grid, prm.num_hr_units, 0, 0, 1, false), pre_scale(prm.pre_scale), pre_shift(prm.pre_shift) {}

  // Channels [c, c + kConvPack) of `src` when they are a plain 16-byte copy of a block
  // pixel (no prologue): their global address (the GPU copies them asynchronously). Null
  // when they have to be computed: compute().
  SEGBLOCKS_HOST_DEVICE const scalar_t* copy_source(const PadSource<index_t>& src, int64_t c) {
    if (pre_scale != nullptr || (src.kind != kPadHighres && src.kind != kPadLowres)) return nullptr;
    win.ch = static_cast<index_t>(c);
    return src.kind == kPadHighres ? win.hr_at(src.slot, src.y, src.x) : win.lr_at(src.slot, src.y, src.x);
  }

  // The other packs: BlockPad's 2x2 mean, the prologue, or the zero border, into `out`.
  SEGBLOCKS_HOST_DEVICE void compute(const PadSource<index_t>& src, int64_t c, scalar_t* out) {
    win.ch = static_cast<index_t>(c);
    if (pre_scale != nullptr) {
      win.fetch_values(src, out, ConvPrologue<Cvt>{pre_scale, pre_shift, c});
    } else {
      win.fetch_values(src, out);
    }
  }
};

// Pack e (0..kConvSlabPacks) of chunk `chunk`'s weights for output channels
// [n_tile * kConvBN, + kConvBN): tap e / (kConvBN * 4), output channel (e / 4) % kConvBN,
// channels c0 + (e % 4) * 8. conv_slab_offset is its place in the shared-memory slab
// ([tap][output channel] rows of pitch kConvPitch).
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE const scalar_t* conv_slab_source(const ConvUnitsParams<scalar_t, D>& prm, int64_t n_tile,
                                                       int64_t chunk, int e) {
  const int tap = e / (kConvBN * kConvPacksPerPixel), rem = e - tap * kConvBN * kConvPacksPerPixel;
  const int n = rem / kConvPacksPerPixel, p = rem - n * kConvPacksPerPixel;
  return prm.weight + (n_tile * kConvBN + n) * 9 * prm.cin + tap * prm.cin + chunk * kConvBK + p * kConvPack;
}
// In the kernel, thread t < kConvSlabRows loads packs t, t + kConvSlabRows, ...: the taps
// 0, 1, ... of one output channel's row, whose source and place advance by Ci and by
// kConvBN rows per pack.
constexpr int kConvSlabRows = kConvBN * kConvPacksPerPixel;
static_assert(kConvSlabRows <= kConvThreads, "one thread per slab row");
SEGBLOCKS_HOST_DEVICE int conv_slab_offset(int e) {
  const int row = e / kConvPacksPerPixel;  // tap * kConvBN + output channel
  return row * kConvPitch + (e - row * kConvPacksPerPixel) * kConvPack;
}

// Output pixel m, channels [n, n + kConvPack): the float32 sums `v` + bias + residual, ReLU,
// rounded and stored.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_finish(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t m,
                                             int64_t n, AccPack<Cvt, kConvPack>& v) {
  if (prm.bias != nullptr) {
    AccPack<Cvt, kConvPack> b;
    b.load(prm.bias + n);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) v.v[l] += b.v[l];
  }
  const int64_t offset = m * prm.cout + n;
  if (prm.residual != nullptr) {
    AccPack<Cvt, kConvPack> z;
    z.load(prm.residual + offset);
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) v.v[l] += z.v[l];
  }
  if (prm.relu) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) v.v[l] = v.v[l] > 0 ? v.v[l] : (v.v[l] != v.v[l] ? v.v[l] : 0);
  }
  v.store(prm.out + offset);
}

// Thread `t`'s share of the epilogue of split `split`: packs t, t + 128, ... of the
// kConvBM x kConvBN float32 tile `c_tile` (row pitch kConvCPitch), finished (one split) or
// written to the split's partial sums.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_epilogue(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm,
                                               int64_t m_tile, int64_t n_tile, int64_t split, const float* c_tile,
                                               int t) {
  constexpr int kPacksPerRow = kConvBN / kConvPack;
  const ConvTileSpan span = conv_tile_span(prm.tiling, m_tile);
  SEGBLOCKS_UNROLL
  for (int e = t; e < kConvBM * kPacksPerRow; e += kConvThreads) {
    const int row = e / kPacksPerRow, col = (e % kPacksPerRow) * kConvPack;
    if (row >= span.count) continue;
    const int64_t m = span.base + row;
    const int64_t n = n_tile * kConvBN + col;
    const float* c = c_tile + row * kConvCPitch + col;
    if (prm.splits > 1) {
      float* dst = prm.partial + (split * prm.rows + m) * prm.cout + n;
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kConvPack; ++l) dst[l] = c[l];
      continue;
    }
    AccPack<Cvt, kConvPack> v;
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) v.v[l] = c[l];
    conv_units_finish<Cvt, D>(prm, m, n, v);
  }
}

// Split-K: pack `linear` of the output ([rows, Co / kConvPack]) = the splits' partial sums
// added in order, finished.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_reduce_element(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm,
                                                     int64_t linear) {
  const int64_t packs = prm.cout / kConvPack;
  const int64_t m = linear / packs, n = (linear - m * packs) * kConvPack;
  AccPack<Cvt, kConvPack> v;
  v.fill(0);
  for (int64_t s = 0; s < prm.splits; ++s) {
    const float* src = prm.partial + (s * prm.rows + m) * prm.cout + n;
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kConvPack; ++l) v.v[l] += src[l];
  }
  conv_units_finish<Cvt, D>(prm, m, n, v);
}

}  // namespace segblocks
