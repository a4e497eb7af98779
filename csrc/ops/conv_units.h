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
// An implicit GEMM: M = units * uo * uo output pixels, N = Co, K = 9 * Ci, taken tap by tap
// (ky, kx) in chunks of kConvBK input channels. A thread block computes a kConvBM x kConvBN
// output tile; per K step its threads gather the A tile (one output pixel's input pixel at
// the tap, kConvBK channels, read through UnitWindow: interior pixels directly, halo pixels
// through pad_source, looked up once per tap) and the B tile (weights in channels_last
// order, [Co][ky][kx][Ci], so K is contiguous per output channel) into shared memory
// (asynchronous copies where a pack is a plain copy of a pixel, a few steps ahead), and the
// tensor cores multiply them.
// The epilogue adds bias and residual, applies the ReLU and writes 16-byte packs.
//
// This header holds the per-thread pieces (gather, weight load, epilogue), torch-free and
// CUDA-free; ops/cuda/conv_units_kernel.cu runs them around WMMA, and
// test/cuda_kernels_host.cu runs the same pieces around a scalar multiply on the CPU.
//
// Requirements (the launcher checks them; the executor falls back to BlockPad + cuDNN
// otherwise): half or bfloat16; every tensor channels_last and 16-byte aligned;
// Ci % kConvBK == 0; Co % kConvBN == 0.
#pragma once

#include <cstdint>

#include "ops/block_indexing.h"
#include "ops/unit_window.h"

namespace segblocks {

constexpr int kConvBM = 64;        // output pixels per thread block
constexpr int kConvBN = 64;        // output channels per thread block
constexpr int kConvBK = 32;        // input channels per K step (of one tap)
constexpr int kConvThreads = 128;  // 4 warps, each a 32 x 32 quarter of the output tile
constexpr int kConvPack = 8;       // 16 bytes of half / bfloat16
constexpr int kConvPitch = kConvBK + 8;   // smem row pitch of the A and B tiles (elements)
constexpr int kConvStages = 3;            // shared-memory ring: kConvStages - 1 K steps in flight
constexpr int kConvCPitch = kConvBN + 4;  // smem row pitch of the float32 output tile
// packs of one smem row each thread loads: 64 rows x 4 packs over 128 threads
constexpr int kConvPacksPerThread = kConvBM * (kConvBK / kConvPack) / kConvThreads;
static_assert(kConvBM == kConvBN, "one row (pixel / output channel) per pair of threads");
static_assert(kConvPacksPerThread == 2, "each thread loads half a row");

template <typename scalar_t, typename D>
struct ConvUnitsParams {
  UnitsInput<scalar_t> in;
  const scalar_t* weight;    // [Co, 3, 3, Ci] contiguous (a channels_last [Co, Ci, 3, 3])
  const scalar_t* bias;      // [Co] or null
  const scalar_t* residual;  // [U, uo, uo, Co] contiguous (channels_last units) or null
  scalar_t* out;             // [U, uo, uo, Co]
  GridIndexer<D> grid;
  D pixels_div;  // divides by uo * uo
  D side_div;    // divides by uo
  int64_t num_hr_units;  // 4 Nh
  int64_t rows;          // U * uo * uo (GEMM M)
  int64_t stride;        // 1 or 2
  int64_t cin, cout;
  bool relu;
  const scalar_t* pre_scale;  // [Ci] or null (no prologue), with pre_shift
  const scalar_t* pre_shift;
  // split-K: thread block (m, n, z) sums K steps [z * steps_per_split, (z + 1) * steps_per_split);
  // with splits > 1 it writes its float32 tile to partial [splits, rows, Co] and
  // conv_units_reduce_element sums the splits in order and finishes (deterministic)
  int64_t splits;
  int64_t steps_per_split;
  float* partial;
};

// The K steps [first, last) of split `split`.
struct ConvSteps {
  int64_t first, last;
};

template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE ConvSteps conv_units_split_steps(const ConvUnitsParams<scalar_t, D>& prm, int64_t split) {
  const int64_t steps = 9 * prm.cin / kConvBK;
  const int64_t first = split * prm.steps_per_split;
  const int64_t last = first + prm.steps_per_split;
  return ConvSteps{first < steps ? first : steps, last < steps ? last : steps};
}

// K splits for `tiles` output tiles of `steps` K steps on `sms` multiprocessors: enough
// thread blocks for about 4 per multiprocessor (the deep layers have few, long tiles), each
// split at least 8 steps long; 1 where the tiles alone fill the GPU.
inline int64_t conv_units_auto_splits(int64_t tiles, int64_t steps, int64_t sms) {
  const int64_t want = (4 * sms + tiles - 1) / tiles;
  const int64_t most = steps / 8;
  const int64_t splits = want < most ? want : most;
  return splits > 1 ? splits : 1;
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

// K step `ks` = tap * (Ci / kConvBK) + channel chunk: taps outermost, so the source of a
// thread's pixel at a tap is looked up once for all its channel chunks.
struct ConvStep {
  int64_t tap, dy, dx, c0;
};

SEGBLOCKS_HOST_DEVICE ConvStep conv_step(int64_t ks, int64_t cin) {
  const int64_t chunks = cin / kConvBK;
  const int64_t tap = ks / chunks;
  return ConvStep{tap, tap / 3, tap % 3, (ks - tap * chunks) * kConvBK};
}

// The output pixel a thread gathers for (fixed for the whole K loop) and the source of its
// input pixel at the current tap.
template <typename Cvt, typename D>
struct ConvRow {
  using index_t = typename D::index_t;
  UnitWindow<Cvt, kConvPack, D> win;
  index_t iy, ix;  // the output pixel's window origin in the padded tile (its row, column * stride)
  bool valid;
  int64_t tap;  // the tap `src` is for (-1: none yet)
  PadSource<index_t> src;
};

// Row `row` (0..kConvBM) of M tile `m_tile`; rows past the end read as zeros.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE ConvRow<Cvt, D> conv_units_row(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm,
                                                     int64_t m_tile, int row) {
  using index_t = typename D::index_t;
  const int64_t m = m_tile * kConvBM + row;
  const bool valid = m < prm.rows;
  const index_t mm = static_cast<index_t>(valid ? m : 0);
  const index_t unit = prm.pixels_div.div(mm);
  const index_t pixel = mm - unit * static_cast<index_t>(prm.pixels_div.divisor);
  const index_t oy = prm.side_div.div(pixel);
  const index_t ox = pixel - oy * static_cast<index_t>(prm.side_div.divisor);
  const index_t s = static_cast<index_t>(prm.stride);
  return ConvRow<Cvt, D>{UnitWindow<Cvt, kConvPack, D>(prm.in, prm.grid, prm.num_hr_units, unit, 0, 1, false),
                         oy * s,
                         ox * s,
                         valid,
                         -1,
                         PadSource<index_t>{kPadConstant, 0, 0, 0}};
}

// Thread `t` loads pack p (0..kConvPacksPerThread) of half a row per tile and K step: row
// t / 2 of the tile, columns from conv_tile_col(t, p); conv_tile_offset is its place in a
// shared-memory tile of row pitch kConvPitch.
SEGBLOCKS_HOST_DEVICE int conv_tile_col(int t, int p) { return ((t & 1) * kConvPacksPerThread + p) * kConvPack; }
SEGBLOCKS_HOST_DEVICE int conv_tile_offset(int t, int p) { return (t / 2) * kConvPitch + conv_tile_col(t, p); }

// Moves the row's source to K step `st`'s tap (looked up once per tap).
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_locate(ConvRow<Cvt, D>& r, const ConvStep& st) {
  using index_t = typename D::index_t;
  if (st.tap == r.tap) return;
  r.tap = st.tap;
  r.src = r.valid ? r.win.locate(r.iy + static_cast<index_t>(st.dy), r.ix + static_cast<index_t>(st.dx))
                  : PadSource<index_t>{kPadConstant, 0, 0, 0};
}

// Pack p of thread t's share of the A tile at step `st` (after conv_units_locate), when it
// is a plain 16-byte copy of a block pixel (no prologue): its global address (the GPU copies
// it asynchronously). Null when it has to be computed: conv_units_a_compute.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE const typename Cvt::scalar_t* conv_units_a_copy_source(ConvRow<Cvt, D>& r, const ConvStep& st,
                                                                            int t, int p, bool prologue) {
  using index_t = typename D::index_t;
  if (prologue || (r.src.kind != kPadHighres && r.src.kind != kPadLowres)) return nullptr;
  r.win.ch = static_cast<index_t>(st.c0 + conv_tile_col(t, p));
  return r.src.kind == kPadHighres ? r.win.hr_at(r.src.slot, r.src.y, r.src.x)
                                   : r.win.lr_at(r.src.slot, r.src.y, r.src.x);
}

// The other packs: BlockPad's 2x2 mean, the prologue, or the zero border, into `out`.
template <typename Cvt, typename D>
SEGBLOCKS_HOST_DEVICE void conv_units_a_compute(ConvRow<Cvt, D>& r, const ConvStep& st, int t, int p,
                                                const typename Cvt::scalar_t* pre_scale,
                                                const typename Cvt::scalar_t* pre_shift,
                                                typename Cvt::scalar_t* out) {
  using index_t = typename D::index_t;
  const int64_t c = st.c0 + conv_tile_col(t, p);
  r.win.ch = static_cast<index_t>(c);
  if (pre_scale != nullptr) {
    r.win.fetch_values(r.src, out, ConvPrologue<Cvt>{pre_scale, pre_shift, c});
  } else {
    r.win.fetch_values(r.src, out);
  }
}

// Pack p of thread t's share of the B tile at step `st`: output channel n_tile * kConvBN + t / 2.
template <typename scalar_t, typename D>
SEGBLOCKS_HOST_DEVICE const scalar_t* conv_units_b_source(const ConvUnitsParams<scalar_t, D>& prm, int64_t n_tile,
                                                          const ConvStep& st, int t, int p) {
  const int64_t n = n_tile * kConvBN + t / 2;
  return prm.weight + n * 9 * prm.cin + (st.dy * 3 + st.dx) * prm.cin + st.c0 + conv_tile_col(t, p);
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
  SEGBLOCKS_UNROLL
  for (int e = t; e < kConvBM * kPacksPerRow; e += kConvThreads) {
    const int row = e / kPacksPerRow, col = (e % kPacksPerRow) * kConvPack;
    const int64_t m = m_tile * kConvBM + row;
    if (m >= prm.rows) continue;
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
