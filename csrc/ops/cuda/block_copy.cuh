// The two copy kernels that split and combine share on the GPU (each is the other's
// backward, up to the low-res scale):
//
//   dense_to_blocks: dense map -> high-res blocks (copy) + low-res blocks (2x2 sum * scale)
//       split: scale 1/4 (average pooling);  combine_backward: scale 1
//   blocks_to_dense: blocks -> dense map, high-res copied, low-res nearest-upsampled * scale
//       combine: scale 1;  split_backward: scale 1/4
//
// One thread per output element, grid-stride loop. Consecutive threads take consecutive
// elements of the output's memory order (width for NCHW, channels for channels_last), so
// writes are coalesced and, for inputs in the same layout, reads too. Every output element
// is written exactly once: no atomics, deterministic.
//
// Each kernel's body is a __host__ __device__ "element" function of a parameter struct, so
// test/test_cuda_kernels_host.py can run the exact index arithmetic on the CPU (through
// test/cuda_kernels_host.cu) on machines without a GPU.
#pragma once

#include <cmath>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "ops/block_indexing.h"
#include "ops/cuda/cuda_scalar.cuh"
#include "ops/cuda/pdl.cuh"

namespace segblocks {
namespace cuda {

// Strides of the dense map [N, C, GH*b, GW*b] contiguous in NCHW or NHWC order.
// Strides of a tensor [N, C, H, W] contiguous in NCHW or NHWC order.
inline Strides4 contiguous_strides(int64_t c, int64_t h, int64_t w, bool channels_last) {
  if (channels_last) return Strides4{h * w * c, 1, w * c, c};
  return Strides4{c * h * w, h * w, w, 1};
}

inline bool same_strides(const Strides4& a, const Strides4& b) {
  return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

inline Strides4 contiguous_dense_strides(const BlockGrid& g, bool channels_last) {
  return contiguous_strides(g.channels, g.grid_h * g.hr_side, g.grid_w * g.hr_side, channels_last);
}

// Calls f(kChannelsLast tag, divider tag) with the instantiation a launch needs.
template <typename F>
void with_layout_and_index(bool channels_last, bool index32, F&& f) {
  if (index32) {
    if (channels_last) f(std::true_type{}, FastDivider{});
    else f(std::false_type{}, FastDivider{});
  } else {
    if (channels_last) f(std::true_type{}, PlainDivider<int64_t>{});
    else f(std::false_type{}, PlainDivider<int64_t>{});
  }
}

// Calls f(pack width tag, kChannelsLast tag, divider tag) with the widest channel pack every
// tensor allows (16 bytes, 8 bytes for 16-bit types, else 1: one thread per element, any
// layout) and the instantiation of with_layout_and_index; packs are channels_last only.
template <typename scalar_t, typename F>
void with_pack_layout_and_index(bool channels_last, int64_t channels, std::initializer_list<PackCheck> tensors,
                                bool index32, F&& f) {
  constexpr int kPack = PackWidth<scalar_t>::value, kHalf = PackWidth<scalar_t>::half;
  const auto fits = [&](int64_t pack) {
    if (!channels_last || channels % pack != 0) return false;
    for (const PackCheck& t : tensors) {
      if (!packable(t.data, t.strides, pack, pack * static_cast<int64_t>(sizeof(scalar_t)), t.empty)) return false;
    }
    return true;
  };
  const auto run = [&](auto pack_tag) {
    constexpr int kWidth = decltype(pack_tag)::value;
    with_layout_and_index(channels_last, index32, [&](auto layout_tag, auto divider_tag) {
      if constexpr (kWidth == 1 || decltype(layout_tag)::value) {
        f(std::integral_constant<int, kWidth>{}, layout_tag, divider_tag);
      }
    });
  };
  if (fits(kPack)) {
    run(std::integral_constant<int, kPack>{});
  } else if (kHalf != kPack && fits(kHalf)) {
    run(std::integral_constant<int, kHalf>{});
  } else {
    run(std::integral_constant<int, 1>{});
  }
}

// with_pack_layout_and_index for a kernel between a dense map (any strides) and the two
// block tensors (contiguous in the output order; an empty one does not limit the pack):
// split, split_padded and combine's backward.
template <typename scalar_t, typename F>
void with_dense_and_blocks(const scalar_t* dense, Strides4 dense_strides, const scalar_t* highres,
                           const scalar_t* lowres, const BlockGrid& g, bool channels_last, bool index32, F&& f) {
  with_pack_layout_and_index<scalar_t>(channels_last, g.channels,
                                       {{dense, dense_strides, false},
                                        {highres, Strides4{0, 1, 0, 0}, g.num_highres == 0},
                                        {lowres, Strides4{0, 1, 0, 0}, g.num_lowres == 0}},
                                       index32, std::forward<F>(f));
}

// The thread blocks per SM a kernel's registers must allow (__launch_bounds__' second
// argument; 1: not bounded). Kernels whose element function needs many registers and waits
// on its loads specialise it for `Params`, trading registers for resident warps that hide
// the loads' latency. Measured on the H100 (node_profile.py, batch 4, 40% high-res;
// benchmarks/results/steps/22-*; the one-output-per-thread kernels of the time):
// upsample2x_units 4 (196 -> 170 us; 6 spills: 304 us), max_pool_units 6 (110 -> 104 us;
// 4: 123 us).
template <typename Params>
struct MinBlocksPerSM {
  static constexpr int value = 1;
};

// Runs `element(params, linear)` for linear in [0, total) with a grid-stride loop.
template <typename Params, void (*element)(const Params&, int64_t)>
__device__ __forceinline__ void grid_stride_loop(const Params& params, int64_t total) {
  for (int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; linear < total;
       linear += int64_t(blockDim.x) * gridDim.x) {
    element(params, linear);
  }
}

// Every kernel below may be launched programmatically (pdl.cuh): it waits for the kernel
// before it first thing, then lets the next one launch (its blocks wait for this one's end).
template <typename Params, void (*element)(const Params&, int64_t)>
__global__ void __launch_bounds__(kThreadsPerBlock) grid_stride_kernel(Params params, int64_t total) {
  wait_for_prerequisite_grid();
  allow_dependent_grid();
  grid_stride_loop<Params, element>(params, total);
}

// The same with the registers bounded for kMinBlocks resident blocks per SM. (Not the
// kernel above with kMinBlocks = 1: nvcc then allocates registers differently, and
// BlockPad ran 40% slower on the H100.)
template <typename Params, void (*element)(const Params&, int64_t), int kMinBlocks>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocks)
    grid_stride_kernel_bounded(Params params, int64_t total) {
  wait_for_prerequisite_grid();
  allow_dependent_grid();
  grid_stride_loop<Params, element>(params, total);
}

// Elements in two phases: `locate` finds where element `linear` lies and what it reads, from
// the parameters and from tensors no kernel of this extension writes (a layout's positions
// and block map: torch ops build them); `store` reads the maps and writes the element.
template <typename Params, typename Located, Located (*locate)(const Params&, int64_t),
          void (*store)(const Params&, const Located&)>
SEGBLOCKS_HOST_DEVICE void locate_then_store(const Params& params, int64_t linear) {
  store(params, locate(params, linear));
}

// The same, with each thread's first element located before the wait for the kernel before
// (programmatic launches, pdl.cuh): its lookups overlap that kernel's end. Safe because the
// kernel before, whichever it is, started only after the one before it had finished, and no
// kernel writes what `locate` reads.
template <typename Params, typename Located, Located (*locate)(const Params&, int64_t),
          void (*store)(const Params&, const Located&)>
__global__ void __launch_bounds__(kThreadsPerBlock) located_grid_stride_kernel(Params params, int64_t total) {
  int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  Located first{};
  if (linear < total) first = locate(params, linear);
  wait_for_prerequisite_grid();
  allow_dependent_grid();
  if (linear < total) store(params, first);
  for (linear += step; linear < total; linear += step) store(params, locate(params, linear));
}

// ---------------------------------------------------------------------------------------
// dense_to_blocks: split (scale 1/4) and combine_backward (scale 1)
// ---------------------------------------------------------------------------------------

template <typename scalar_t, typename D>
struct DenseToBlocksParams {
  const scalar_t* dense;
  Strides4 dense_strides;
  scalar_t* highres;  // [Nh, C, b, b], contiguous in the output order
  scalar_t* lowres;   // [Nl, C, b/2, b/2], same order
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  GridIndexer<D> grid;
  D channels_div;
  int64_t hr_total;  // elements (packs) of highres; the following ones are lowres ones
  acc_type<scalar_t> lowres_scale;
};

// One element (kPack == 1, any layout) or one pack of kPack channels of a channels_last
// pixel (prm.channels_div then divides by C / kPack and linear counts packs); the same values
// and the same order of the 2x2 sum either way.
//
// kUnits (split_units): the high-res output is the blocks' units [4 Nh, C, b/2, b/2] (unit
// 4k + 2 qy + qx is quarter (qy, qx) of block k), written in the units' memory order.
template <typename scalar_t, bool kChannelsLast, typename D, int kPack = 1, bool kUnits = false>
SEGBLOCKS_HOST_DEVICE void dense_to_blocks_element(const DenseToBlocksParams<scalar_t, D>& prm,
                                                   int64_t linear) {
  using index_t = typename D::index_t;
  using acc_t = acc_type<scalar_t>;
  using P = Pack<scalar_t, kPack>;
  const StridesT<index_t> ds(prm.dense_strides);
  const index_t b = prm.grid.hr_side;
  if (linear < prm.hr_total) {
    const index_t e = static_cast<index_t>(linear);
    auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div,
                                                   kUnits ? prm.grid.lr_side_div : prm.grid.hr_side_div);
    if constexpr (kUnits) {  // unit -> its block and the quarter's offset in it
      const index_t u = b / 2, q = el.k & 3;
      el.k >>= 2;
      el.i += (q >> 1) * u;
      el.j += (q & 1) * u;
    }
    const auto cell = cell_of_position(static_cast<index_t>(prm.hr_pos[el.k]), prm.grid);
    const index_t src = ds.offset(cell.n, el.c * kPack, cell.r * b + el.i, cell.c * b + el.j);
    *reinterpret_cast<P*>(prm.highres + e * kPack) = load_pack<scalar_t, kPack>(prm.dense + src);
  } else {
    const index_t e = static_cast<index_t>(linear - prm.hr_total);
    const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div, prm.grid.lr_side_div);
    const auto cell = cell_of_position(static_cast<index_t>(prm.lr_pos[el.k]), prm.grid);
    const scalar_t* p =
        prm.dense + ds.offset(cell.n, el.c * kPack, cell.r * b + 2 * el.i, cell.c * b + 2 * el.j);
    const P a = load_pack<scalar_t, kPack>(p), bb = load_pack<scalar_t, kPack>(p + ds.w),
            c = load_pack<scalar_t, kPack>(p + ds.h), d = load_pack<scalar_t, kPack>(p + ds.h + ds.w);
    P out;
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      // same summation order as avg_pool2d (row by row)
      const acc_t sum = to_acc(a.v[l]) + to_acc(bb.v[l]) + to_acc(c.v[l]) + to_acc(d.v[l]);
      out.v[l] = from_acc<scalar_t>(sum * prm.lowres_scale);
    }
    *reinterpret_cast<P*>(prm.lowres + e * kPack) = out;
  }
}

// Calls run(params, total) with the params of the instantiation (pack, layout, index type)
// that fits; `run` launches the kernel (or, in the host test harness, loops on the CPU).
// Channels_last inputs whose channels form 16- or 8-byte packs (RGB padded to 4 channels in
// half precision: 8 bytes) move a pack per thread.
template <typename scalar_t, typename Run>
void with_dense_to_blocks(const scalar_t* dense, Strides4 dense_strides, scalar_t* highres,
                          scalar_t* lowres, const int64_t* hr_pos, const int64_t* lr_pos,
                          const BlockGrid& g, double lowres_scale, bool channels_last, bool index32,
                          Run&& run) {
  const int64_t b = g.hr_side;
  const int64_t hr_total = g.num_highres * g.channels * b * b;
  const int64_t total = hr_total + g.num_lowres * g.channels * (b / 2) * (b / 2);
  if (total == 0) return;
  with_dense_and_blocks(dense, dense_strides, highres, lowres, g, channels_last, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = DenseToBlocksParams<scalar_t, D>;
    const Params prm{dense, dense_strides, highres, lowres, hr_pos, lr_pos, GridIndexer<D>(g),
                     D(g.channels / kPack), hr_total / kPack, static_cast<acc_type<scalar_t>>(lowres_scale)};
    run.template operator()<Params, &dense_to_blocks_element<scalar_t, decltype(layout)::value, D, kPack>>(
        prm, total / kPack);
  });
}

// split_units: `units` [4 Nh + Nl, C, b/2, b/2] (contiguous in the output order) gets the
// high-res blocks' units, then the low-res blocks (2x2 averages): split and quarter + cat
// in one pass.
template <typename scalar_t, typename Run>
void with_dense_to_units(const scalar_t* dense, Strides4 dense_strides, scalar_t* units, const int64_t* hr_pos,
                         const int64_t* lr_pos, const BlockGrid& g, bool channels_last, bool index32, Run&& run) {
  const int64_t u = g.hr_side / 2;
  const int64_t hr_total = 4 * g.num_highres * g.channels * u * u;
  const int64_t total = hr_total + g.num_lowres * g.channels * u * u;
  if (total == 0) return;
  scalar_t* lowres = units + hr_total;
  const auto launch = [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = DenseToBlocksParams<scalar_t, D>;
    const Params prm{dense, dense_strides, units, lowres, hr_pos, lr_pos, GridIndexer<D>(g),
                     D(g.channels / kPack), hr_total / kPack, static_cast<acc_type<scalar_t>>(0.25)};
    run.template operator()<Params, &dense_to_blocks_element<scalar_t, decltype(layout)::value, D, kPack, true>>(
        prm, total / kPack);
  };
  with_dense_and_blocks(dense, dense_strides, units, lowres, g, channels_last, index32, launch);
}

// ---------------------------------------------------------------------------------------
// split_padded: the blocks of a dense map BlockPad-ed (zero image border), straight from
// the map: block_pad(split(x), p, "constant", 0) in one pass, without the blocks. Every
// value BlockPad would read is a pixel of the map (a high-res block's, or its high-res
// neighbour's) or a 2x2 mean of the map (a low-res pixel, or BlockPad's mean of a high-res
// neighbour's pixels, which are the map's): each is computed here from the map with
// split's arithmetic (the same sum order, one rounding), so the values are identical.
// ---------------------------------------------------------------------------------------

// Where split_padded reads the map: a dense tensor through its strides, or (split_padded_frames)
// uint8 RGB frames [N, H, W, 3] normalised on the fly with normalize_frames' arithmetic
// (ops/normalize.h: one float32 fma per value, rounded to the dtype; channels past the third
// are 0), so the values are those of split_padded(normalize_frames(images)) and the
// normalised map is never written.
template <typename scalar_t>
struct DenseMap {
  const scalar_t* dense;
  Strides4 strides;
};

struct FramesMap {
  const uint8_t* images;  // [N, H, W, 3] contiguous
  const float* scale;     // [3]
  const float* shift;     // [3]
  int64_t height, width;
};

template <typename scalar_t, int kPack, typename index_t>
SEGBLOCKS_HOST_DEVICE Pack<scalar_t, kPack> map_pack(const DenseMap<scalar_t>& m, index_t n, index_t c, index_t y,
                                                     index_t x) {
  return load_pack<scalar_t, kPack>(m.dense + StridesT<index_t>(m.strides).offset(n, c, y, x));
}

// The 2x2 group at (y, x): (y, x), (y, x + 1), (y + 1, x), (y + 1, x + 1).
template <typename scalar_t, int kPack, typename index_t>
SEGBLOCKS_HOST_DEVICE void map_quad(const DenseMap<scalar_t>& m, index_t n, index_t c, index_t y, index_t x,
                                    Pack<scalar_t, kPack> (&q)[4]) {
  const StridesT<index_t> ds(m.strides);
  const scalar_t* p = m.dense + ds.offset(n, c, y, x);
  q[0] = load_pack<scalar_t, kPack>(p);
  q[1] = load_pack<scalar_t, kPack>(p + ds.w);
  q[2] = load_pack<scalar_t, kPack>(p + ds.h);
  q[3] = load_pack<scalar_t, kPack>(p + ds.h + ds.w);
}

// FramesMap's normalisation constants, read once.
struct FrameConstants {
  float scale[3], shift[3];
  SEGBLOCKS_HOST_DEVICE explicit FrameConstants(const FramesMap& m) {
    SEGBLOCKS_UNROLL
    for (int ch = 0; ch < 3; ++ch) {
      scale[ch] = m.scale[ch];
      shift[ch] = m.shift[ch];
    }
  }
};

// Channels [c, c + kPack) of the normalised frame pixel at px (rounded to the dtype; zero
// past the third channel).
template <typename scalar_t, int kPack>
SEGBLOCKS_HOST_DEVICE Pack<scalar_t, kPack> frame_pack(const FrameConstants& k, const uint8_t* px, int64_t c) {
  Pack<scalar_t, kPack> v;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) {
    const int64_t ch = c + l;
    v.v[l] = from_acc<scalar_t>(ch < 3 ? fmaf(static_cast<float>(px[ch]), k.scale[ch], k.shift[ch]) : 0.0f);
  }
  return v;
}

// The 2x2 mean of four packs, in split's (and avg_pool2d's) order of additions.
template <typename scalar_t, int kPack>
SEGBLOCKS_HOST_DEVICE Pack<scalar_t, kPack> quad_mean(const Pack<scalar_t, kPack> (&q)[4]) {
  using acc_t = acc_type<scalar_t>;
  Pack<scalar_t, kPack> out;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) {
    const acc_t sum = to_acc(q[0].v[l]) + to_acc(q[1].v[l]) + to_acc(q[2].v[l]) + to_acc(q[3].v[l]);
    out.v[l] = from_acc<scalar_t>(sum * acc_t(0.25));
  }
  return out;
}

// The bytes of frame n's pixel (y, x).
template <typename index_t>
SEGBLOCKS_HOST_DEVICE const uint8_t* frame_pixel(const FramesMap& m, index_t n, index_t y, index_t x) {
  return m.images + ((static_cast<int64_t>(n) * m.height + y) * m.width + x) * 3;
}

template <typename scalar_t, int kPack, typename index_t>
SEGBLOCKS_HOST_DEVICE Pack<scalar_t, kPack> map_pack(const FramesMap& m, index_t n, index_t c, index_t y,
                                                     index_t x) {
  return frame_pack<scalar_t, kPack>(FrameConstants(m), frame_pixel(m, n, y, x), c);
}

template <typename scalar_t, int kPack, typename index_t>
SEGBLOCKS_HOST_DEVICE void map_quad(const FramesMap& m, index_t n, index_t c, index_t y, index_t x,
                                    Pack<scalar_t, kPack> (&q)[4]) {
  const uint8_t* p = frame_pixel(m, n, y, x);
  const int64_t row = m.width * 3;
  const FrameConstants k(m);
  q[0] = frame_pack<scalar_t, kPack>(k, p, c);
  q[1] = frame_pack<scalar_t, kPack>(k, p + 3, c);
  q[2] = frame_pack<scalar_t, kPack>(k, p + row, c);
  q[3] = frame_pack<scalar_t, kPack>(k, p + row + 3, c);
}

template <typename scalar_t, typename D, typename Map = DenseMap<scalar_t>>
struct SplitPaddedParams {
  Map map;
  scalar_t* highres;  // [Nh, C, b+2p, b+2p], contiguous in the output order
  scalar_t* lowres;   // [Nl, C, b/2+2p, b/2+2p], same order
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  const int32_t* block_map;
  GridIndexer<D> grid;
  D channels_div;
  D hr_padded_div;  // divides by b + 2p
  D lr_padded_div;  // divides by b/2 + 2p
  int64_t padding;
  int64_t hr_total;  // elements (packs) of highres; the following ones are lowres ones
};

template <typename scalar_t, bool kChannelsLast, typename D, int kPack = 1, typename Map = DenseMap<scalar_t>>
SEGBLOCKS_HOST_DEVICE void split_padded_element(const SplitPaddedParams<scalar_t, D, Map>& prm, int64_t linear) {
  using index_t = typename D::index_t;
  using acc_t = acc_type<scalar_t>;
  using P = Pack<scalar_t, kPack>;
  const bool out_lowres = linear >= prm.hr_total;
  const index_t e = static_cast<index_t>(out_lowres ? linear - prm.hr_total : linear);
  const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div,
                                                       out_lowres ? prm.lr_padded_div : prm.hr_padded_div);
  const index_t c = el.c * kPack, p = static_cast<index_t>(prm.padding);
  const auto cell = cell_of_position(static_cast<index_t>(out_lowres ? prm.lr_pos[el.k] : prm.hr_pos[el.k]),
                                     prm.grid);
  const index_t side = prm.grid.side(out_lowres);
  // the pixel's row and column in the map at the block's own resolution
  const index_t y = cell.r * side + el.i - p, x = cell.c * side + el.j - p;
  P out;
  if (y < 0 || y >= prm.grid.grid_h * side || x < 0 || x >= prm.grid.grid_w * side) {
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) out.v[l] = from_acc<scalar_t>(acc_t(0));
  } else {
    // a high-res pixel of a high-res block is copied; everything else is a 2x2 mean of
    // the map: a low-res block's pixel, or (nearest upsampling) the low-res neighbour's
    // pixel under a high-res block's halo pixel
    bool copy = false;
    index_t yy = 2 * y, xx = 2 * x;
    if (!out_lowres) {
      copy = prm.block_map[(cell.n * prm.grid.grid_h + prm.grid.hr_side_div.div(y)) * prm.grid.grid_w +
                           prm.grid.hr_side_div.div(x)] >= 0;
      yy = copy ? y : y - (y & 1);
      xx = copy ? x : x - (x & 1);
    }
    if (copy) {
      out = map_pack<scalar_t, kPack>(prm.map, cell.n, c, yy, xx);
    } else {
      P q[4];
      map_quad<scalar_t, kPack>(prm.map, cell.n, c, yy, xx, q);
      out = quad_mean(q);
    }
  }
  *reinterpret_cast<P*>((out_lowres ? prm.lowres : prm.highres) + static_cast<int64_t>(e) * kPack) = out;
}

// split_padded_frames where one pack holds a whole pixel (the stem's 4 channels): two
// horizontally adjacent output pixels per thread (padded rows of even width), one store of
// both packs where it fits 16 bytes. The block's position, cell and row are found once per
// pair; the normalisation constants are read once; a high-res tile's interior pixels are
// copied without the block-map lookup (their cell is the tile's own, high-res). Values and
// the order of the 2x2 mean's additions are split_padded_element's, pixel by pixel.
// prm.hr_total counts pairs here.
template <typename scalar_t, typename D, int kPack>
SEGBLOCKS_HOST_DEVICE void split_padded_frames_pair_element(const SplitPaddedParams<scalar_t, D, FramesMap>& prm,
                                                            int64_t linear) {
  using index_t = typename D::index_t;
  using acc_t = acc_type<scalar_t>;
  using P = Pack<scalar_t, kPack>;
  const bool out_lowres = linear >= prm.hr_total;
  const index_t e = static_cast<index_t>(out_lowres ? linear - prm.hr_total : linear);
  const D& wdiv = out_lowres ? prm.lr_padded_div : prm.hr_padded_div;
  const index_t w = static_cast<index_t>(wdiv.divisor);
  const index_t pixel = 2 * e, row = wdiv.div(pixel), j = pixel - row * w;
  const index_t k = wdiv.div(row), i = row - k * w;
  const index_t p = static_cast<index_t>(prm.padding);
  const auto cell = cell_of_position(static_cast<index_t>(out_lowres ? prm.lr_pos[k] : prm.hr_pos[k]), prm.grid);
  const index_t side = prm.grid.side(out_lowres);
  const index_t y = cell.r * side + i - p, x0 = cell.c * side + j - p;
  const bool row_in = y >= 0 && y < prm.grid.grid_h * side;
  const bool row_interior = i >= p && i < p + side;
  const index_t width = prm.grid.grid_w * side;
  const FramesMap& m = prm.map;
  const FrameConstants norm(m);
  const int64_t frame_row = m.width * 3;
  P out[2];
  SEGBLOCKS_UNROLL
  for (int h = 0; h < 2; ++h) {
    const index_t x = x0 + h;
    if (!row_in || x < 0 || x >= width) {
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kPack; ++l) out[h].v[l] = from_acc<scalar_t>(acc_t(0));
      continue;
    }
    bool copy = false;
    index_t yy = 2 * y, xx = 2 * x;
    if (!out_lowres) {
      copy = (row_interior && j + h >= p && j + h < p + side) ||
             prm.block_map[(cell.n * prm.grid.grid_h + prm.grid.hr_side_div.div(y)) * prm.grid.grid_w +
                           prm.grid.hr_side_div.div(x)] >= 0;
      yy = copy ? y : y - (y & 1);
      xx = copy ? x : x - (x & 1);
    }
    const uint8_t* src = frame_pixel(m, cell.n, yy, xx);
    if (copy) {
      out[h] = frame_pack<scalar_t, kPack>(norm, src, 0);
    } else {
      const P q[4] = {frame_pack<scalar_t, kPack>(norm, src, 0), frame_pack<scalar_t, kPack>(norm, src + 3, 0),
                      frame_pack<scalar_t, kPack>(norm, src + frame_row, 0),
                      frame_pack<scalar_t, kPack>(norm, src + frame_row + 3, 0)};
      out[h] = quad_mean(q);
    }
  }
  scalar_t* dst = (out_lowres ? prm.lowres : prm.highres) + static_cast<int64_t>(e) * 2 * kPack;
  if constexpr (2 * kPack * sizeof(scalar_t) <= 16) {
    Pack<scalar_t, 2 * kPack> both;
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) {
      both.v[l] = out[0].v[l];
      both.v[kPack + l] = out[1].v[l];
    }
    *reinterpret_cast<Pack<scalar_t, 2 * kPack>*>(dst) = both;
  } else {
    reinterpret_cast<P*>(dst)[0] = out[0];
    reinterpret_cast<P*>(dst)[1] = out[1];
  }
}

template <typename scalar_t, typename Run>
void with_split_padded(const scalar_t* dense, Strides4 dense_strides, scalar_t* highres, scalar_t* lowres,
                       const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& g,
                       int64_t padding, bool channels_last, bool index32, Run&& run) {
  const int64_t hp = g.hr_side + 2 * padding, lp = g.hr_side / 2 + 2 * padding;
  const int64_t hr_total = g.num_highres * g.channels * hp * hp;
  const int64_t total = hr_total + g.num_lowres * g.channels * lp * lp;
  if (total == 0) return;
  with_dense_and_blocks(dense, dense_strides, highres, lowres, g, channels_last, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = SplitPaddedParams<scalar_t, D>;
    const Params prm{DenseMap<scalar_t>{dense, dense_strides}, highres, lowres, hr_pos, lr_pos, block_map,
                     GridIndexer<D>(g), D(g.channels / kPack), D(hp), D(lp), padding, hr_total / kPack};
    run.template operator()<Params, &split_padded_element<scalar_t, decltype(layout)::value, D, kPack>>(
        prm, total / kPack);
  });
}

// split_padded_frames: the stem's padded blocks straight from the uint8 frames (FramesMap);
// `highres` / `lowres` channels_last, contiguous, g.channels >= 3 (the zero channels too).
template <typename scalar_t, typename Run>
void with_split_padded_frames(const uint8_t* images, const float* scale, const float* shift, int64_t height,
                              int64_t width, scalar_t* highres, scalar_t* lowres, const int64_t* hr_pos,
                              const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& g, int64_t padding,
                              bool index32, Run&& run) {
  const int64_t hp = g.hr_side + 2 * padding, lp = g.hr_side / 2 + 2 * padding;
  const int64_t hr_total = g.num_highres * g.channels * hp * hp;
  const int64_t total = hr_total + g.num_lowres * g.channels * lp * lp;
  if (total == 0) return;
  const std::initializer_list<PackCheck> tensors{{highres, Strides4{0, 1, 0, 0}, g.num_highres == 0},
                                                 {lowres, Strides4{0, 1, 0, 0}, g.num_lowres == 0}};
  with_pack_layout_and_index<scalar_t>(true, g.channels, tensors, index32, [&](auto pack, auto layout, auto div) {
    constexpr int kPack = decltype(pack)::value;
    using D = decltype(div);
    using Params = SplitPaddedParams<scalar_t, D, FramesMap>;
    // pairs of pixels: one pack per pixel, even padded widths, both outputs aligned for the
    // pair's store
    constexpr int64_t kPairBytes = 2 * kPack * sizeof(scalar_t) <= 16 ? 2 * kPack * sizeof(scalar_t) : 16;
    const auto pair_aligned = [&](const scalar_t* t, bool empty) {
      return empty || reinterpret_cast<uintptr_t>(t) % kPairBytes == 0;
    };
    const bool pairs = g.channels == kPack && hp % 2 == 0 && lp % 2 == 0 &&
                       pair_aligned(highres, g.num_highres == 0) && pair_aligned(lowres, g.num_lowres == 0);
    const int64_t per = pairs ? 2 * kPack : kPack;
    const Params prm{FramesMap{images, scale, shift, height, width}, highres, lowres, hr_pos, lr_pos, block_map,
                     GridIndexer<D>(g), D(g.channels / kPack), D(hp), D(lp), padding, hr_total / per};
    if (pairs) {
      run.template operator()<Params, &split_padded_frames_pair_element<scalar_t, D, kPack>>(prm, total / per);
    } else {
      run.template operator()<Params, &split_padded_element<scalar_t, true, D, kPack, FramesMap>>(prm, total / per);
    }
  });
}

// ---------------------------------------------------------------------------------------
// blocks_to_dense: combine (scale 1) and split_backward (scale 1/4)
// ---------------------------------------------------------------------------------------

template <typename scalar_t, typename D>
struct BlocksToDenseParams {
  const scalar_t* highres;
  Strides4 highres_strides;
  const scalar_t* lowres;
  Strides4 lowres_strides;
  scalar_t* dense;  // [N, C, GH*b, GW*b], contiguous in the output order
  Strides4 dense_strides;
  const int64_t* hr_pos;
  const int64_t* lr_pos;
  GridIndexer<D> grid;
  D channels_div;
  int64_t num_highres;
  acc_type<scalar_t> lowres_scale;
  bool unit_scale;  // lowres_scale == 1: copy without the float round trip
  int64_t hr_unit;  // 0: highres is [Nh, C, b, b]; b/2: it is the blocks' units (HrStridesT)
};

// Elements are enumerated block by block (high-res blocks, then low-res blocks), each block
// covering b x b dense pixels in the output's memory order.
template <typename scalar_t, bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE void blocks_to_dense_element(const BlocksToDenseParams<scalar_t, D>& prm,
                                                   int64_t linear) {
  using index_t = typename D::index_t;
  const HrStridesT<index_t> hs(prm.highres_strides, prm.hr_unit);
  const StridesT<index_t> ls(prm.lowres_strides), ds(prm.dense_strides);
  const index_t b = prm.grid.hr_side;
  const auto el = unravel_block_element<kChannelsLast>(static_cast<index_t>(linear),
                                                       prm.channels_div, prm.grid.hr_side_div);
  const bool is_hr = el.k < prm.num_highres;
  const index_t k = is_hr ? el.k : el.k - static_cast<index_t>(prm.num_highres);
  const auto cell =
      cell_of_position(static_cast<index_t>(is_hr ? prm.hr_pos[k] : prm.lr_pos[k]), prm.grid);
  scalar_t v;
  if (is_hr) {
    v = prm.highres[hs.offset(k, el.c, el.i, el.j)];
  } else {
    v = prm.lowres[ls.offset(k, el.c, el.i / 2, el.j / 2)];
    if (!prm.unit_scale) v = from_acc<scalar_t>(to_acc(v) * prm.lowres_scale);
  }
  prm.dense[ds.offset(cell.n, el.c, cell.r * b + el.i, cell.c * b + el.j)] = v;
}

template <typename scalar_t, typename Run>
void with_blocks_to_dense(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                          Strides4 lowres_strides, scalar_t* dense, const int64_t* hr_pos,
                          const int64_t* lr_pos, const BlockGrid& g, double lowres_scale,
                          bool channels_last, bool index32, Run&& run, int64_t hr_unit = 0) {
  const int64_t total = (g.num_highres + g.num_lowres) * g.channels * g.hr_side * g.hr_side;
  if (total == 0) return;
  with_layout_and_index(channels_last, index32, [&](auto layout_tag, auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = BlocksToDenseParams<scalar_t, D>;
    const Params prm{highres, highres_strides, lowres, lowres_strides, dense,
                     contiguous_dense_strides(g, channels_last), hr_pos, lr_pos, GridIndexer<D>(g),
                     D(g.channels), g.num_highres, static_cast<acc_type<scalar_t>>(lowres_scale),
                     lowres_scale == 1.0, hr_unit};
    run.template operator()<Params, &blocks_to_dense_element<scalar_t, decltype(layout_tag)::value, D>>(
        prm, total);
  });
}

// Launches element functions on a stream (the `run` of the with_* helpers).
struct LaunchOnStream {
  cudaStream_t stream;
  // kMin: the register bound, MinBlocksPerSM<Params> unless the launcher names one for this
  // element (a Params type whose elements differ in registers)
  template <typename Params, void (*element)(const Params&, int64_t), int kMin = MinBlocksPerSM<Params>::value>
  void operator()(const Params& prm, int64_t total) const {
    if constexpr (kMin > 1) {
      launch_kernel(grid_stride_kernel_bounded<Params, element, kMin>, blocks_for(total), kThreadsPerBlock, stream,
                    prm, total);
    } else {
      launch_kernel(grid_stride_kernel<Params, element>, blocks_for(total), kThreadsPerBlock, stream, prm, total);
    }
  }
  // two-phase elements: located before the wait where that is switched on (pdl.cuh), else
  // as one element like the others
  template <typename Params, typename Located, Located (*locate)(const Params&, int64_t),
            void (*store)(const Params&, const Located&)>
  void located(const Params& prm, int64_t total) const {
    if (programmatic_prefetch_enabled()) {
      launch_kernel(located_grid_stride_kernel<Params, Located, locate, store>, blocks_for(total), kThreadsPerBlock,
                    stream, prm, total);
    } else {
      this->template operator()<Params, &locate_then_store<Params, Located, locate, store>>(prm, total);
    }
  }
};

}  // namespace cuda
}  // namespace segblocks
