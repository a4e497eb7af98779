// Block geometry shared by the CPU and CUDA kernels: where a padded output pixel reads
// from (BlockPad forward) and which padded output pixels read an input pixel (BlockPad
// backward).
//
// Torch-free on purpose: the CUDA kernel files include it and must compile with plain
// nvcc (DESIGN.md section 6). One definition of the rules for both devices means the two
// backends cannot drift apart; the pure-PyTorch reference (segblocks_core/ops/_reference.py)
// is the oracle both are tested against.
//
// Conventions (segblocks_core.layout.BlockLayout):
//   * grid cell (n, r, c) has flat position n*GH*GW + r*GW + c;
//   * block_map[n, r, c] = k >= 0: high-res slot k; -1 - k: low-res slot k;
//   * a high-res block is `hr_side` pixels, a low-res block hr_side / 2.
// BlockPad semantics (DESIGN.md section 3): a block padded by p reads the dense map *at its
// own resolution*, where high-res cells seen at low resolution are 2x2 means and low-res
// cells seen at high resolution are nearest-upsampled. Outside the image the pixel is the
// constant (mode "constant") or the nearest image pixel at the block's own resolution
// (mode "replicate"). Images of a batch never mix because the image index n of a block is
// never changed.
//
// Index arithmetic is templated on a Divider: PlainDivider<int64_t> (CPU, and CUDA for
// tensors beyond 2^31 elements) or FastDivider (CUDA, 32-bit): on a GPU, integer division
// by a runtime divisor costs ~20 (32-bit) to ~70 (64-bit) instructions and would dominate
// these memory-bound kernels.
#pragma once

#include <cstdint>
#include <cstddef>

#if defined(__CUDACC__)
#define SEGBLOCKS_HOST_DEVICE __host__ __device__ __forceinline__
#define SEGBLOCKS_UNROLL _Pragma("unroll")
#else
#define SEGBLOCKS_HOST_DEVICE inline
#define SEGBLOCKS_UNROLL
#endif

namespace segblocks {

// Sizes of a block layout at one feature stride (host ints, copied into kernels by value).
struct BlockGrid {
  int64_t grid_n;       // images
  int64_t grid_h;       // block rows per image
  int64_t grid_w;       // block columns per image
  int64_t hr_side;      // high-res block side in pixels (even); low-res side is hr_side / 2
  int64_t channels;
  int64_t num_highres;  // Nh
  int64_t num_lowres;   // Nl
};

// Element strides of a 4-D tensor [N, C, H, W]; kernels read inputs through these so any
// layout (NCHW, channels_last, cropped views) works without a copy.
struct Strides4 {
  int64_t n, c, h, w;
};

// A pack of kPack consecutive channels of one channels_last pixel, loaded and stored as one
// aligned access (16 bytes: 8 half/bfloat16, 4 float, 2 double; a 128-bit access on the GPU).
template <typename scalar_t, int kPack>
struct alignas(sizeof(scalar_t) * kPack) Pack {
  scalar_t v[kPack];
};

template <typename scalar_t, int kPack>
SEGBLOCKS_HOST_DEVICE Pack<scalar_t, kPack> load_pack(const scalar_t* p) {
  return *reinterpret_cast<const Pack<scalar_t, kPack>*>(p);
}

// An eval BatchNorm and the ReLU after it on one value, in the accumulation type:
// relu(shift + v * scale) (NaN stays NaN, like torch.relu). The one formula of BlockPad's
// prologue (CPU and CUDA) and the upsampling's epilogue, so that a map the upsampling wrote
// with the BatchNorm + ReLU applied holds the values BlockPad's prologue would have read.
// (ops/scale_shift_relu.h rounds one explicit fma instead, as PyTorch's addcmul does.)
template <typename acc_t>
SEGBLOCKS_HOST_DEVICE acc_t batchnorm_relu(acc_t v, acc_t scale, acc_t shift) {
  const acc_t a = shift + v * scale;
  return a < acc_t(0) ? acc_t(0) : a;
}

// The pack width of 16 bytes, and the half pack (8 bytes) for 2-byte types.
template <typename scalar_t>
struct PackWidth {
  static constexpr int value = 16 / sizeof(scalar_t);
  static constexpr int half = sizeof(scalar_t) == 2 ? value / 2 : value;
};

// True if a channels_last tensor with these strides and base pointer can be read in packs
// of `pack` elements (`bytes` bytes, the required alignment)
// (an empty one always can: its strides are never used).
// One tensor a packed kernel reads or writes (for the pack choice).
struct PackCheck {
  const void* data;
  Strides4 strides;
  bool empty;
};

inline bool packable(const void* data, Strides4 s, int64_t pack, int64_t bytes, bool empty = false) {
  return empty || (reinterpret_cast<uintptr_t>(data) % bytes == 0 && s.c == 1 && s.n % pack == 0 &&
                   s.h % pack == 0 && s.w % pack == 0);
}

// The same strides in a launch's index type, with the element offset they give.
template <typename index_t>
struct StridesT {
  index_t n, c, h, w;
  StridesT() = default;
  SEGBLOCKS_HOST_DEVICE explicit StridesT(const Strides4& s)
      : n(static_cast<index_t>(s.n)), c(static_cast<index_t>(s.c)), h(static_cast<index_t>(s.h)),
        w(static_cast<index_t>(s.w)) {}
  SEGBLOCKS_HOST_DEVICE index_t offset(index_t n_, index_t c_, index_t y, index_t x) const {
    return n_ * n + c_ * c + y * h + x * w;
  }
};

// Element offsets of the high-res blocks, stored either whole (``[Nh, C, h, h]``, unit 0) or
// as quarters, "units" (``[4*Nh, C, u, u]`` with u = h/2, unit u): pixel (y, x) of block k is
// then pixel (y mod u, x mod u) of unit 4k + 2*(y >= u) + (x >= u). With units, both
// resolutions are tiles of the same size, so one convolution runs them all.
template <typename index_t>
struct HrStridesT : StridesT<index_t> {
  index_t unit;
  HrStridesT() = default;
  SEGBLOCKS_HOST_DEVICE HrStridesT(const Strides4& s, int64_t unit_)
      : StridesT<index_t>(s), unit(static_cast<index_t>(unit_)) {}
  SEGBLOCKS_HOST_DEVICE index_t offset(index_t k, index_t c, index_t y, index_t x) const {
    if (unit == 0) return StridesT<index_t>::offset(k, c, y, x);
    const index_t qy = y >= unit ? 1 : 0, qx = x >= unit ? 1 : 0;
    return StridesT<index_t>::offset(4 * k + 2 * qy + qx, c, y - qy * unit, x - qx * unit);
  }
};

template <typename T>
struct PlainDivider {
  using index_t = T;
  T divisor;
  PlainDivider() = default;
  explicit PlainDivider(int64_t d) : divisor(static_cast<T>(d)) {}
  SEGBLOCKS_HOST_DEVICE T div(T n) const { return n / divisor; }
};

// Division by a divisor fixed for a launch as a multiply-high, an add and a shift
// (Granlund & Montgomery; the same scheme as torch's IntDivider). Valid for
// 0 <= n < 2^31 and 1 <= divisor < 2^31, which the launchers guarantee before choosing it.
struct FastDivider {
  using index_t = int32_t;
  uint32_t divisor;
  uint32_t magic;
  uint32_t shift;
  FastDivider() = default;
  explicit FastDivider(int64_t d) : divisor(static_cast<uint32_t>(d)) {
    for (shift = 0; shift < 32; ++shift) {
      if ((uint64_t(1) << shift) >= divisor) break;
    }
    const uint64_t one = 1;
    magic = static_cast<uint32_t>(((one << 32) * ((one << shift) - divisor)) / divisor + 1);
  }
  SEGBLOCKS_HOST_DEVICE int32_t div(int32_t n) const {
    const uint32_t un = static_cast<uint32_t>(n);
#if defined(__CUDA_ARCH__)
    const uint32_t t = __umulhi(un, magic);
#else
    const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(un) * magic) >> 32);
#endif
    return static_cast<int32_t>((t + un) >> shift);
  }
};

// The grid of a launch with its divisors precomputed.
template <typename Divider>
struct GridIndexer {
  using index_t = typename Divider::index_t;
  index_t grid_h, grid_w, hr_side;
  Divider cells_per_image, grid_w_div, hr_side_div, lr_side_div;
  GridIndexer() = default;
  explicit GridIndexer(const BlockGrid& g)
      : grid_h(static_cast<index_t>(g.grid_h)),
        grid_w(static_cast<index_t>(g.grid_w)),
        hr_side(static_cast<index_t>(g.hr_side)),
        cells_per_image(g.grid_h * g.grid_w > 0 ? g.grid_h * g.grid_w : 1),
        grid_w_div(g.grid_w > 0 ? g.grid_w : 1),
        hr_side_div(g.hr_side),
        lr_side_div(g.hr_side / 2) {}
  SEGBLOCKS_HOST_DEVICE index_t side(bool lowres) const { return lowres ? hr_side / 2 : hr_side; }
  SEGBLOCKS_HOST_DEVICE const Divider& side_div(bool lowres) const {
    return lowres ? lr_side_div : hr_side_div;
  }
};

template <typename index_t>
struct BlockElement {
  index_t k, c, i, j;  // block, channel, row, column
};

// Element `e` of a tensor [K, C, H, W] stored contiguously in NCHW order or, with
// kChannelsLast, NHWC order: (k, c, i, j).
template <bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE BlockElement<typename D::index_t> unravel_element(
    typename D::index_t e, const D& channels_div, const D& height_div, const D& width_div) {
  using index_t = typename D::index_t;
  const index_t channels = static_cast<index_t>(channels_div.divisor);
  const index_t height = static_cast<index_t>(height_div.divisor);
  const index_t width = static_cast<index_t>(width_div.divisor);
  BlockElement<index_t> el;
  if (kChannelsLast) {
    const index_t pixel = channels_div.div(e);
    el.c = e - pixel * channels;
    const index_t row = width_div.div(pixel);
    el.j = pixel - row * width;
    el.k = height_div.div(row);
    el.i = row - el.k * height;
  } else {
    const index_t row = width_div.div(e);
    el.j = e - row * width;
    const index_t plane = height_div.div(row);
    el.i = row - plane * height;
    el.k = channels_div.div(plane);
    el.c = plane - el.k * channels;
  }
  return el;
}

// The same for a stack of square blocks [K, C, side, side].
template <bool kChannelsLast, typename D>
SEGBLOCKS_HOST_DEVICE BlockElement<typename D::index_t> unravel_block_element(
    typename D::index_t e, const D& channels_div, const D& side_div) {
  return unravel_element<kChannelsLast>(e, channels_div, side_div, side_div);
}

template <typename index_t>
struct GridCell {
  index_t n, r, c;
};

template <typename D>
SEGBLOCKS_HOST_DEVICE GridCell<typename D::index_t> cell_of_position(typename D::index_t pos,
                                                                     const GridIndexer<D>& g) {
  using index_t = typename D::index_t;
  const index_t n = g.cells_per_image.div(pos);
  const index_t rem = pos - n * (g.grid_h * g.grid_w);
  const index_t r = g.grid_w_div.div(rem);
  return GridCell<index_t>{n, r, rem - r * g.grid_w};
}

template <typename index_t>
SEGBLOCKS_HOST_DEVICE index_t floor_div(index_t a, index_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

template <typename index_t>
SEGBLOCKS_HOST_DEVICE index_t clamp_index(index_t v, index_t size) {
  return v < 0 ? 0 : (v >= size ? size - 1 : v);
}

// What a padded output pixel is made of.
enum PadSourceKind : int {
  kPadConstant = 0,     // outside the image, mode "constant"
  kPadHighres = 1,      // highres[slot, :, y, x]
  kPadLowres = 2,       // lowres[slot, :, y, x]
  kPadHighresMean = 3,  // mean of highres[slot, :, y:y+2, x:x+2] (low-res view of a high-res cell)
};

template <typename index_t>
struct PadSource {
  int kind;
  index_t slot;
  index_t y;  // row in the source block, at the source block's resolution
  index_t x;
};

// Source of pixel (i, j) of the padded block of the cell `cell`, whose own resolution is
// low-res if `out_lowres`. (i, j) run over [0, side + 2p).
template <typename D>
SEGBLOCKS_HOST_DEVICE PadSource<typename D::index_t> pad_source(
    const int32_t* block_map, const GridIndexer<D>& g, GridCell<typename D::index_t> cell,
    bool out_lowres, typename D::index_t i, typename D::index_t j, typename D::index_t padding,
    bool replicate) {
  using index_t = typename D::index_t;
  const index_t side = g.side(out_lowres);
  const index_t height = g.grid_h * side;
  const index_t width = g.grid_w * side;
  index_t y = cell.r * side + i - padding;  // dense coordinate at the block's own resolution
  index_t x = cell.c * side + j - padding;
  if (y < 0 || y >= height || x < 0 || x >= width) {
    if (!replicate) return PadSource<index_t>{kPadConstant, 0, 0, 0};
    y = clamp_index(y, height);
    x = clamp_index(x, width);
  }
  const D& side_div = g.side_div(out_lowres);
  const index_t src_r = side_div.div(y);
  const index_t src_c = side_div.div(x);
  const index_t ly = y - src_r * side;
  const index_t lx = x - src_c * side;
  const int32_t m = block_map[(cell.n * g.grid_h + src_r) * g.grid_w + src_c];
  if (m >= 0) {
    if (!out_lowres) return PadSource<index_t>{kPadHighres, m, ly, lx};
    return PadSource<index_t>{kPadHighresMean, m, 2 * ly, 2 * lx};
  }
  const index_t slot = -1 - static_cast<index_t>(m);
  if (!out_lowres) return PadSource<index_t>{kPadLowres, slot, ly / 2, lx / 2};  // nearest upsampling
  return PadSource<index_t>{kPadLowres, slot, ly, lx};
}

// BlockPad backward, gather form: calls visit(out_lowres, slot, i, j, weight) for every
// padded output pixel that read dense pixel (y, x) of the map at resolution `out_lowres`,
// where `weight` is passed through. In replicate mode an image-border pixel is also read
// by every outside pixel that clamps onto it. The visiting order is fixed, so sums built
// from it are deterministic.
template <typename D, typename Visit>
SEGBLOCKS_HOST_DEVICE void visit_readers_of_dense_pixel(
    const int32_t* block_map, const GridIndexer<D>& g, typename D::index_t n, bool out_lowres,
    typename D::index_t y, typename D::index_t x, typename D::index_t padding, bool replicate,
    float weight, Visit& visit) {
  using index_t = typename D::index_t;
  const index_t side = g.side(out_lowres);
  const index_t height = g.grid_h * side;
  const index_t width = g.grid_w * side;
  // the unclamped coordinates that read (y, x): itself, plus the outside band in replicate mode
  const index_t y_lo = (replicate && y == 0) ? -padding : y;
  const index_t y_hi = (replicate && y == height - 1) ? height - 1 + padding : y;
  const index_t x_lo = (replicate && x == 0) ? -padding : x;
  const index_t x_hi = (replicate && x == width - 1) ? width - 1 + padding : x;
  for (index_t yy = y_lo; yy <= y_hi; ++yy) {
    // cells whose padded window [r*side - p, r*side + side + p) contains yy
    index_t r_lo = floor_div<index_t>(yy - padding - side, side) + 1;
    index_t r_hi = floor_div<index_t>(yy + padding, side);
    if (r_lo < 0) r_lo = 0;
    if (r_hi > g.grid_h - 1) r_hi = g.grid_h - 1;
    for (index_t r = r_lo; r <= r_hi; ++r) {
      const index_t i = yy - r * side + padding;
      for (index_t xx = x_lo; xx <= x_hi; ++xx) {
        index_t c_lo = floor_div<index_t>(xx - padding - side, side) + 1;
        index_t c_hi = floor_div<index_t>(xx + padding, side);
        if (c_lo < 0) c_lo = 0;
        if (c_hi > g.grid_w - 1) c_hi = g.grid_w - 1;
        for (index_t c = c_lo; c <= c_hi; ++c) {
          const int32_t m = block_map[(n * g.grid_h + r) * g.grid_w + c];
          const bool cell_lowres = m < 0;
          if (cell_lowres != out_lowres) continue;  // that cell's padded block is the other output
          const index_t slot = cell_lowres ? -1 - static_cast<index_t>(m) : static_cast<index_t>(m);
          visit(out_lowres, slot, i, xx - c * side + padding, weight);
        }
      }
    }
  }
}

// BlockPad backward for one input pixel: pixel (u, v) of the block at `cell` (a low-res
// block if `in_lowres`). Enumerates every padded output pixel whose value depends on it,
// with the derivative of that output w.r.t. the input pixel:
//   * outputs at the input's own resolution read it directly (weight 1);
//   * a high-res input pixel is one of the four pixels a low-res reader averages (1/4);
//   * a low-res input pixel is nearest-upsampled into four high-res dense pixels (1 each).
template <typename D, typename Visit>
SEGBLOCKS_HOST_DEVICE void visit_pad_readers(const int32_t* block_map, const GridIndexer<D>& g,
                                             GridCell<typename D::index_t> cell, bool in_lowres,
                                             typename D::index_t u, typename D::index_t v,
                                             typename D::index_t padding, bool replicate,
                                             Visit& visit) {
  using index_t = typename D::index_t;
  const index_t side = g.side(in_lowres);
  const index_t y = cell.r * side + u;
  const index_t x = cell.c * side + v;
  if (!in_lowres) {
    visit_readers_of_dense_pixel(block_map, g, cell.n, false, y, x, padding, replicate, 1.0f, visit);
    visit_readers_of_dense_pixel(block_map, g, cell.n, true, y / 2, x / 2, padding, replicate,
                                 0.25f, visit);
  } else {
    visit_readers_of_dense_pixel(block_map, g, cell.n, true, y, x, padding, replicate, 1.0f, visit);
    for (index_t a = 0; a < 2; ++a)
      for (index_t b = 0; b < 2; ++b)
        visit_readers_of_dense_pixel(block_map, g, cell.n, false, 2 * y + a, 2 * x + b, padding,
                                     replicate, 1.0f, visit);
  }
}

}  // namespace segblocks
