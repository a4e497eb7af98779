// The two copy loops that split and combine share on the CPU (each is the other's
// backward, up to the low-res scale):
//
//   dense_to_blocks: dense map -> high-res blocks (copy) + low-res blocks (2x2 sum * scale)
//       split:            scale 1/4 (average pooling)
//       combine_backward: scale 1   (each low-res pixel was upsampled to four)
//   blocks_to_dense: blocks -> dense map, high-res copied, low-res nearest-upsampled * scale
//       combine:          scale 1
//       split_backward:   scale 1/4
//
// Inputs are read through their strides (NCHW, channels_last or views, no copy); outputs
// are written through theirs. The innermost loop runs over the output's unit-stride
// dimension: width for NCHW, channels for channels_last.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "ops/block_checks.h"  // strides_of
#include "ops/block_indexing.h"
#include "ops/unit_window.h"

namespace segblocks {
namespace cpu {

// The zero-padded convolution's tiles of `units` ([4Nh + Nl, C, u, u]: the high-res units,
// then the low-res blocks) by `padding` px: the block_pad_units op (through the dispatcher,
// so the CPU kernel of whatever registered it), in `format`. How the ops that can write
// their consumer's padded tiles (upsample2x_units, max_pool_units) do it on the CPU; their
// CUDA kernels write the interiors and only fill the frames.
inline at::Tensor padded_tiles_of_units(const at::Tensor& units, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                        const at::Tensor& block_map, int64_t padding, at::MemoryFormat format) {
  static const auto block_pad_units =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("segblocks::block_pad_units", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, int64_t, c10::string_view, double, bool,
                            const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>();
  const int64_t nh = 4 * hr_pos.size(0);
  // in `format` also where the units are 1 px (whose memory format is ambiguous)
  return block_pad_units
      .call(units.narrow(0, 0, nh), units.narrow(0, nh, units.size(0) - nh), hr_pos, lr_pos, block_map, padding,
            "constant", 0.0, /*quartered=*/true, std::nullopt, std::nullopt)
      .contiguous(format);
}

using CpuGridIndexer = GridIndexer<PlainDivider<int64_t>>;
using CpuCell = GridCell<int64_t>;
using Div = PlainDivider<int64_t>;

// Scalar conversions for the shared element functions (ops/upsample_argmax.h,
// ops/max_pool.h); the CUDA twin is CudaCvt.
template <typename T>
struct CpuCvt {
  using scalar_t = T;
  using acc_t = at::opmath_type<T>;
  static acc_t to_acc(T v) { return static_cast<acc_t>(v); }
  static T round(acc_t v) { return static_cast<T>(v); }
  static acc_t infinity() { return std::numeric_limits<acc_t>::infinity(); }
};

// The UnitsInput (ops/unit_window.h) of an op fused with BlockPad on units.
template <typename scalar_t>
UnitsInput<scalar_t> units_input(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                                 const at::Tensor& lr_pos, const at::Tensor& block_map, int64_t hr_unit_in) {
  return UnitsInput<scalar_t>{highres.const_data_ptr<scalar_t>(), strides_of(highres), hr_unit_in,
                              lowres.const_data_ptr<scalar_t>(), strides_of(lowres), hr_pos.const_data_ptr<int64_t>(),
                              lr_pos.const_data_ptr<int64_t>(), block_map.const_data_ptr<int32_t>()};
}

// Runs element(prm, e) for e in [0, total) in parallel (~1k elements per task: each
// element reads a window of values).
template <typename Params, typename Element>
void for_each_pixel(int64_t total, const Params& prm, Element element) {
  at::parallel_for(0, total, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) element(prm, e);
  });
}

// Work items of a block loop are (block, row) pairs; aim for ~32k elements per task.
inline int64_t rows_grain(int64_t elements_per_row) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, elements_per_row));
}

template <typename scalar_t>
inline void copy_strided(scalar_t* dst, int64_t dst_stride, const scalar_t* src, int64_t src_stride,
                         int64_t count) {
  if (dst_stride == 1 && src_stride == 1) {
    std::copy(src, src + count, dst);
    return;
  }
  for (int64_t t = 0; t < count; ++t) dst[t * dst_stride] = src[t * src_stride];
}

// High-res blocks [Nh, C, h, h] as their units [4 Nh, C, h/2, h/2] (unit 4k + 2 qy + qx:
// rows qy h/2..., columns qx h/2... of block k) and back; logical reshapes (a copy where the
// layout needs one), like quarter / unquarter in ops/_reference.py.
inline at::Tensor quarter_blocks(const at::Tensor& highres) {
  const int64_t n = highres.size(0), c = highres.size(1), u = highres.size(2) / 2;
  return highres.reshape({n, c, 2, u, 2, u}).permute({0, 2, 4, 1, 3, 5}).reshape({4 * n, c, u, u});
}

inline at::Tensor unquarter_units(const at::Tensor& units) {
  const int64_t n = units.size(0) / 4, c = units.size(1), u = units.size(2);
  return units.reshape({n, 2, 2, c, u, u}).permute({0, 3, 1, 4, 2, 5}).reshape({n, c, 2 * u, 2 * u});
}

template <typename scalar_t>
void dense_to_blocks(const at::Tensor& dense, at::Tensor& highres, at::Tensor& lowres,
                     const at::Tensor& hr_pos, const at::Tensor& lr_pos, const BlockGrid& g,
                     double lowres_scale, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = dense.data_ptr<scalar_t>();
  scalar_t* hr = highres.data_ptr<scalar_t>();
  scalar_t* lr = lowres.data_ptr<scalar_t>();
  const int64_t* hr_p = hr_pos.data_ptr<int64_t>();
  const int64_t* lr_p = lr_pos.data_ptr<int64_t>();
  const Strides4 xs{dense.stride(0), dense.stride(1), dense.stride(2), dense.stride(3)};
  const Strides4 hs{highres.stride(0), highres.stride(1), highres.stride(2), highres.stride(3)};
  const Strides4 ls{lowres.stride(0), lowres.stride(1), lowres.stride(2), lowres.stride(3)};
  const CpuGridIndexer grid(g);
  const int64_t b = g.hr_side, s = b / 2, C = g.channels;
  const acc_t scale = static_cast<acc_t>(lowres_scale);
  const int64_t hr_rows = g.num_highres * b;
  const int64_t lr_rows = g.num_lowres * s;

  at::parallel_for(0, hr_rows + lr_rows, rows_grain(C * b), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      if (item < hr_rows) {  // one row of a high-res block: a copy
        const int64_t k = item / b, i = item % b;
        const CpuCell cell = cell_of_position(hr_p[k], grid);
        const scalar_t* src = x + cell.n * xs.n + (cell.r * b + i) * xs.h + cell.c * b * xs.w;
        scalar_t* dst = hr + k * hs.n + i * hs.h;
        if (channels_last) {
          for (int64_t j = 0; j < b; ++j) copy_strided(dst + j * hs.w, hs.c, src + j * xs.w, xs.c, C);
        } else {
          for (int64_t c = 0; c < C; ++c) copy_strided(dst + c * hs.c, hs.w, src + c * xs.c, xs.w, b);
        }
      } else {  // one row of a low-res block: 2x2 sums of two dense rows
        const int64_t k = (item - hr_rows) / s, i = (item - hr_rows) % s;
        const CpuCell cell = cell_of_position(lr_p[k], grid);
        const scalar_t* src = x + cell.n * xs.n + (cell.r * b + 2 * i) * xs.h + cell.c * b * xs.w;
        scalar_t* dst = lr + k * ls.n + i * ls.h;
        auto pooled = [&](int64_t c, int64_t j) {
          const scalar_t* p = src + c * xs.c + 2 * j * xs.w;
          // same summation order as avg_pool2d (row by row)
          const acc_t sum = static_cast<acc_t>(p[0]) + static_cast<acc_t>(p[xs.w]) +
                            static_cast<acc_t>(p[xs.h]) + static_cast<acc_t>(p[xs.h + xs.w]);
          return static_cast<scalar_t>(sum * scale);
        };
        if (channels_last) {
          for (int64_t j = 0; j < s; ++j)
            for (int64_t c = 0; c < C; ++c) dst[j * ls.w + c * ls.c] = pooled(c, j);
        } else {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t j = 0; j < s; ++j) dst[c * ls.c + j * ls.w] = pooled(c, j);
        }
      }
    }
  });
}

template <typename scalar_t>
void blocks_to_dense(const at::Tensor& highres, const at::Tensor& lowres, at::Tensor& dense,
                     const at::Tensor& hr_pos, const at::Tensor& lr_pos, const BlockGrid& g,
                     double lowres_scale, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* hr = highres.data_ptr<scalar_t>();
  const scalar_t* lr = lowres.data_ptr<scalar_t>();
  scalar_t* x = dense.data_ptr<scalar_t>();
  const int64_t* hr_p = hr_pos.data_ptr<int64_t>();
  const int64_t* lr_p = lr_pos.data_ptr<int64_t>();
  const Strides4 xs{dense.stride(0), dense.stride(1), dense.stride(2), dense.stride(3)};
  const Strides4 hs{highres.stride(0), highres.stride(1), highres.stride(2), highres.stride(3)};
  const Strides4 ls{lowres.stride(0), lowres.stride(1), lowres.stride(2), lowres.stride(3)};
  const CpuGridIndexer grid(g);
  const int64_t b = g.hr_side, C = g.channels;
  const acc_t scale = static_cast<acc_t>(lowres_scale);
  const bool unit_scale = lowres_scale == 1.0;
  const int64_t hr_rows = g.num_highres * b;
  const int64_t lr_rows = g.num_lowres * b;  // dense rows covered by low-res blocks

  at::parallel_for(0, hr_rows + lr_rows, rows_grain(C * b), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const bool is_hr = item < hr_rows;
      const int64_t local = is_hr ? item : item - hr_rows;
      const int64_t k = local / b, i = local % b;  // block and dense row inside it
      const CpuCell cell = cell_of_position(is_hr ? hr_p[k] : lr_p[k], grid);
      scalar_t* dst = x + cell.n * xs.n + (cell.r * b + i) * xs.h + cell.c * b * xs.w;
      if (is_hr) {
        const scalar_t* src = hr + k * hs.n + i * hs.h;
        if (channels_last) {
          for (int64_t j = 0; j < b; ++j) copy_strided(dst + j * xs.w, xs.c, src + j * hs.w, hs.c, C);
        } else {
          for (int64_t c = 0; c < C; ++c) copy_strided(dst + c * xs.c, xs.w, src + c * hs.c, hs.w, b);
        }
        continue;
      }
      // nearest upsampling: each low-res pixel of the row fills two dense pixels
      const scalar_t* src = lr + k * ls.n + (i / 2) * ls.h;
      const int64_t s = b / 2;
      auto scaled = [&](scalar_t v) {
        return unit_scale ? v : static_cast<scalar_t>(static_cast<acc_t>(v) * scale);
      };
      if (channels_last) {
        for (int64_t jj = 0; jj < s; ++jj) {
          scalar_t* d = dst + 2 * jj * xs.w;
          const scalar_t* q = src + jj * ls.w;
          if (unit_scale) {
            copy_strided(d, xs.c, q, ls.c, C);
          } else {
            for (int64_t c = 0; c < C; ++c) d[c * xs.c] = scaled(q[c * ls.c]);
          }
          copy_strided(d + xs.w, xs.c, d, xs.c, C);  // the pixel's right twin
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* d = dst + c * xs.c;
          const scalar_t* q = src + c * ls.c;
          for (int64_t jj = 0; jj < s; ++jj) {
            const scalar_t v = scaled(q[jj * ls.w]);
            d[2 * jj * xs.w] = v;
            d[(2 * jj + 1) * xs.w] = v;
          }
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace segblocks
