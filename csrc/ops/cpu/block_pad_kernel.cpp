// block_pad and block_pad_backward on the CPU.
//
//   block_pad(highres [Nh, C, h, h], lowres [Nl, C, h/2, h/2], hr_pos, lr_pos,
//             block_map [N, GH, GW], padding p, mode, value)
//       -> (highres_padded [Nh, C, h+2p, h+2p], lowres_padded [Nl, C, h/2+2p, h/2+2p])
//   block_pad_units(highres [Nh, C, h, h] or its units [4Nh, C, h/2, h/2], lowres, hr_pos,
//                   lr_pos, block_map, padding, mode, value, quartered)
//       -> [4Nh + Nl, C, h/2+2p, h/2+2p]: every high-res unit padded, then every low-res block
//   block_pad_backward(grad_highres_padded, grad_lowres_padded, hr_pos, lr_pos, block_map,
//                      padding, mode) -> (grad_highres, grad_lowres)
//
// The forward is a gather: each padded pixel's source comes from pad_source()
// (ops/block_indexing.h, shared with CUDA). The interior of a padded block is the block
// itself and is copied row by row; only the halo pays for the neighbour lookup.
//
// The backward is also a gather, over *input* pixels: visit_pad_readers() enumerates, in a
// fixed order, every padded output pixel that read the input pixel, and the task that owns
// the input pixel sums those gradients. No two tasks write the same element and the
// summation order never changes, so the result is bitwise reproducible without atomics
// (a scatter-add over output pixels would need atomics or a colouring of overlapping halos).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"

namespace segblocks {
namespace cpu {
namespace {

template <typename scalar_t>
struct BlockView {  // one block tensor: data and strides
  scalar_t* data;
  Strides4 s;
  explicit BlockView(const at::Tensor& t)
      : data(t.data_ptr<scalar_t>()), s(strides_of(t)) {}
  scalar_t* pixel(int64_t slot, int64_t y, int64_t x) const {
    return data + slot * s.n + y * s.h + x * s.w;
  }
};

// Forward. hr_unit_in != 0: highres is stored as units [4Nh, C, u, u] (HrStridesT);
// hr_unit_out != 0: hr_out holds each high-res unit padded on its own, [4Nh, C, u+2p, u+2p]
// (block_pad_units), the window of the padded block at the unit's offset. pre_scale /
// pre_shift (or nullptr): every value read is relu(x * scale + shift) first.
template <typename scalar_t>
void block_pad_forward(const at::Tensor& highres, const at::Tensor& lowres, at::Tensor& hr_out,
                       at::Tensor& lr_out, const int64_t* hr_p, const int64_t* lr_p,
                       const int32_t* block_map, const BlockGrid& g, int64_t p, bool replicate,
                       double value, bool channels_last, int64_t hr_unit_in = 0,
                       int64_t hr_unit_out = 0, const scalar_t* pre_scale = nullptr,
                       const scalar_t* pre_shift = nullptr) {
  using acc_t = at::opmath_type<scalar_t>;
  const BlockView<scalar_t> lr(lowres), hr_o(hr_out), lr_o(lr_out);
  scalar_t* const hr_data = highres.data_ptr<scalar_t>();
  const HrStridesT<int64_t> hs(strides_of(highres), hr_unit_in);
  const Strides4& ls = lr.s;
  const CpuGridIndexer grid(g);
  const int64_t h = g.hr_side, C = g.channels;
  const int64_t u = hr_unit_out;  // 0: whole blocks
  const int64_t hr_padded = (u != 0 ? u : h) + 2 * p;
  const int64_t hr_rows = (u != 0 ? 4 : 1) * g.num_highres * hr_padded;
  const int64_t lr_rows = g.num_lowres * (h / 2 + 2 * p);
  const scalar_t fill = static_cast<scalar_t>(value);

  // pixel (y, x) of the block in `slot`, channel 0
  auto own_pixel = [&](bool lowres_block, int64_t slot, int64_t y, int64_t x) -> const scalar_t* {
    return lowres_block ? lr.pixel(slot, y, x) : hr_data + hs.offset(slot, 0, y, x);
  };
  const bool pre = pre_scale != nullptr;
  // the prologue on channel c (rounded to the dtype as addcmul + relu_ leave it)
  auto op = [&](scalar_t x, int64_t c) -> scalar_t {
    if (!pre) return x;
    return static_cast<scalar_t>(batchnorm_relu(static_cast<acc_t>(x), static_cast<acc_t>(pre_scale[c]),
                                                 static_cast<acc_t>(pre_shift[c])));
  };
  // channel c of the value at `src`
  auto fetch = [&](const PadSource<int64_t>& src, int64_t c) -> scalar_t {
    switch (src.kind) {
      case kPadHighres:
        return op(hr_data[hs.offset(src.slot, c, src.y, src.x)], c);
      case kPadLowres:
        return op(lr.pixel(src.slot, src.y, src.x)[c * ls.c], c);
      case kPadHighresMean: {
        // same summation order as avg_pool2d in the reference
        const acc_t sum = static_cast<acc_t>(op(hr_data[hs.offset(src.slot, c, src.y, src.x)], c)) +
                          static_cast<acc_t>(op(hr_data[hs.offset(src.slot, c, src.y, src.x + 1)], c)) +
                          static_cast<acc_t>(op(hr_data[hs.offset(src.slot, c, src.y + 1, src.x)], c)) +
                          static_cast<acc_t>(op(hr_data[hs.offset(src.slot, c, src.y + 1, src.x + 1)], c));
        return static_cast<scalar_t>(sum * acc_t(0.25));
      }
      default:
        return fill;
    }
  };

  at::parallel_for(0, hr_rows + lr_rows, rows_grain(C * hr_padded), [&](int64_t begin, int64_t end) {
    std::vector<PadSource<int64_t>> sources;  // per output row: the source of every halo pixel
    for (int64_t item = begin; item < end; ++item) {
      const bool out_lowres = item >= hr_rows;
      const int64_t side = out_lowres ? h / 2 : h;  // the block's side
      const int64_t padded = out_lowres ? h / 2 + 2 * p : hr_padded;  // this output's row length
      const int64_t local = out_lowres ? item - hr_rows : item;
      const int64_t out_k = local / padded, out_i = local % padded;
      // block slot, and the output row / first column in the padded block's coordinates
      int64_t k = out_k, i = out_i, j0 = 0;
      if (!out_lowres && u != 0) {
        k = out_k / 4;
        i += (out_k % 4 / 2) * u;
        j0 = (out_k % 2) * u;
      }
      const CpuCell cell = cell_of_position(out_lowres ? lr_p[k] : hr_p[k], grid);
      const BlockView<scalar_t>& out = out_lowres ? lr_o : hr_o;
      const int64_t own_sc = out_lowres ? ls.c : hs.c, own_sw = out_lowres ? ls.w : hs.w;
      // stored rows of the block are contiguous runs of pixels up to a unit's edge
      const int64_t run_edge = (!out_lowres && hr_unit_in != 0) ? hr_unit_in : side;
      scalar_t* dst = out.pixel(out_k, out_i, 0);
      // the block's own pixels are columns [p, p + side) of rows p .. p + side - 1
      const bool has_interior = i >= p && i < p + side;
      const int64_t interior_begin = has_interior ? std::max<int64_t>(p, j0) - j0 : padded;
      const int64_t interior_end = has_interior ? std::min<int64_t>(p + side, j0 + padded) - j0 : padded;
      sources.resize(padded);
      for (int64_t j = 0; j < padded; ++j) {
        if (j >= interior_begin && j < interior_end) continue;
        sources[j] = pad_source(block_map, grid, cell, out_lowres, i, j0 + j, p, replicate);
      }
      if (channels_last) {
        for (int64_t j = 0; j < padded; ++j) {
          scalar_t* d = dst + j * out.s.w;
          if (j >= interior_begin && j < interior_end) {
            const scalar_t* src = own_pixel(out_lowres, k, i - p, j0 + j - p);
            if (pre) {
              for (int64_t c = 0; c < C; ++c) d[c * out.s.c] = op(src[c * own_sc], c);
            } else {
              copy_strided(d, out.s.c, src, own_sc, C);
            }
          } else {
            for (int64_t c = 0; c < C; ++c) d[c * out.s.c] = fetch(sources[j], c);
          }
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* d = dst + c * out.s.c;
          for (int64_t j = 0; j < interior_begin; ++j) d[j * out.s.w] = fetch(sources[j], c);
          for (int64_t j = interior_begin; j < interior_end;) {
            const int64_t x = j0 + j - p;
            const int64_t run = std::min<int64_t>(interior_end - j, (x < run_edge ? run_edge : side) - x);
            const scalar_t* src = own_pixel(out_lowres, k, i - p, x) + c * own_sc;
            if (pre) {
              for (int64_t r = 0; r < run; ++r) d[(j + r) * out.s.w] = op(src[r * own_sw], c);
            } else {
              copy_strided(d + j * out.s.w, out.s.w, src, own_sw, run);
            }
            j += run;
          }
          for (int64_t j = interior_end; j < padded; ++j) d[j * out.s.w] = fetch(sources[j], c);
        }
      }
    }
  });
}

template <typename scalar_t>
void block_pad_backward_gather(const at::Tensor& grad_hr_padded, const at::Tensor& grad_lr_padded,
                               at::Tensor& grad_hr, at::Tensor& grad_lr, const int64_t* hr_p,
                               const int64_t* lr_p, const int32_t* block_map, const BlockGrid& g,
                               int64_t p, bool replicate) {
  using acc_t = at::opmath_type<scalar_t>;
  const BlockView<scalar_t> ghr_p(grad_hr_padded), glr_p(grad_lr_padded), ghr(grad_hr), glr(grad_lr);
  const CpuGridIndexer grid(g);
  const int64_t h = g.hr_side, C = g.channels;
  const int64_t hr_rows = g.num_highres * h;
  const int64_t lr_rows = g.num_lowres * (h / 2);

  struct Reader {  // one padded output pixel that read the input pixel
    const scalar_t* grad;  // its gradient, channel 0
    int64_t channel_stride;
    acc_t weight;
  };

  at::parallel_for(0, hr_rows + lr_rows, rows_grain(C * h * 4), [&](int64_t begin, int64_t end) {
    std::vector<Reader> readers;
    auto collect = [&](bool out_lowres, int64_t slot, int64_t i, int64_t j, float weight) {
      const BlockView<scalar_t>& src = out_lowres ? glr_p : ghr_p;
      readers.push_back(Reader{src.pixel(slot, i, j), src.s.c, static_cast<acc_t>(weight)});
    };
    for (int64_t item = begin; item < end; ++item) {
      const bool in_lowres = item >= hr_rows;
      const int64_t side = in_lowres ? h / 2 : h;
      const int64_t local = in_lowres ? item - hr_rows : item;
      const int64_t k = local / side, u = local % side;
      const CpuCell cell = cell_of_position(in_lowres ? lr_p[k] : hr_p[k], grid);
      const BlockView<scalar_t>& out = in_lowres ? glr : ghr;
      for (int64_t v = 0; v < side; ++v) {
        readers.clear();
        visit_pad_readers(block_map, grid, cell, in_lowres, u, v, p, replicate, collect);
        scalar_t* d = out.pixel(k, u, v);
        for (int64_t c = 0; c < C; ++c) {
          acc_t sum = 0;
          for (const Reader& r : readers) sum += r.weight * static_cast<acc_t>(r.grad[c * r.channel_stride]);
          d[c * out.s.c] = static_cast<scalar_t>(sum);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> block_pad_kernel(const at::Tensor& highres, const at::Tensor& lowres,
                                                    const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                    const at::Tensor& block_map, int64_t padding,
                                                    c10::string_view mode, double value) {
  const BlockPadArgs checked =
      check_block_pad_args(highres, lowres, hr_pos, lr_pos, block_map, padding, mode);
  const BlockGrid& g = checked.grid;
  const bool replicate = checked.replicate;
  check_layout_values_cpu("block_pad", hr_pos, lr_pos, &block_map, g);
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const auto options = highres.options().memory_format(format);
  const int64_t hp = g.hr_side + 2 * padding, lp = g.hr_side / 2 + 2 * padding;
  at::Tensor hr_out = at::empty({g.num_highres, g.channels, hp, hp}, options);
  at::Tensor lr_out = at::empty({g.num_lowres, g.channels, lp, lp}, options);
  if (hr_out.numel() + lr_out.numel() == 0) return {hr_out, lr_out};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_block_pad_cpu", [&] {
    block_pad_forward<scalar_t>(highres, lowres, hr_out, lr_out, hr_p.data_ptr<int64_t>(),
                                lr_p.data_ptr<int64_t>(), bm.data_ptr<int32_t>(), g, padding,
                                replicate, value, format == at::MemoryFormat::ChannelsLast);
  });
  return {hr_out, lr_out};
}

at::Tensor block_pad_units_kernel(const at::Tensor& highres, const at::Tensor& lowres,
                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                  const at::Tensor& block_map, int64_t padding, c10::string_view mode,
                                  double value, bool quartered, const std::optional<at::Tensor>& pre_scale,
                                  const std::optional<at::Tensor>& pre_shift) {
  const BlockPadArgs checked = check_block_pad_units_args(highres, lowres, hr_pos, lr_pos, block_map,
                                                          padding, mode, quartered, pre_scale, pre_shift);
  const BlockGrid& g = checked.grid;
  check_layout_values_cpu("block_pad_units", hr_pos, lr_pos, &block_map, g);
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t u = g.hr_side / 2, up = u + 2 * padding;
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, up, up},
                             highres.options().memory_format(format));
  if (out.numel() == 0) return out;
  at::Tensor hr_out = out.narrow(0, 0, 4 * g.num_highres);
  at::Tensor lr_out = out.narrow(0, 4 * g.num_highres, g.num_lowres);
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool pre = pre_scale.has_value();
  const at::Tensor scale = pre ? pre_scale->contiguous() : at::Tensor();
  const at::Tensor shift = pre ? pre_shift->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_block_pad_units_cpu", [&] {
    block_pad_forward<scalar_t>(highres, lowres, hr_out, lr_out, hr_p.data_ptr<int64_t>(),
                                lr_p.data_ptr<int64_t>(), bm.data_ptr<int32_t>(), g, padding,
                                checked.replicate, value, format == at::MemoryFormat::ChannelsLast,
                                quartered ? u : 0, u, pre ? scale.data_ptr<scalar_t>() : nullptr,
                                pre ? shift.data_ptr<scalar_t>() : nullptr);
  });
  return out;
}

// The frames of tiles whose interiors are written: BlockPad of the interiors (one pass into
// new tiles, as block_pad_units), copied back; the interiors copy onto themselves unchanged.
void block_pad_ring_kernel(const at::Tensor& padded, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                           const at::Tensor& block_map, int64_t padding) {
  check_block_pad_ring_args(padded, hr_pos, lr_pos, block_map, padding);
  if (padded.numel() == 0) return;
  const int64_t nh = 4 * hr_pos.size(0), u = padded.size(3) - 2 * padding;
  const at::Tensor interior = padded.narrow(2, padding, u).narrow(3, padding, u);
  padded.copy_(block_pad_units_kernel(interior.narrow(0, 0, nh), interior.narrow(0, nh, padded.size(0) - nh), hr_pos,
                                      lr_pos, block_map, padding, "constant", 0.0, /*quartered=*/true, std::nullopt,
                                      std::nullopt));
}

std::tuple<at::Tensor, at::Tensor> block_pad_backward_kernel(
    const at::Tensor& grad_highres_padded, const at::Tensor& grad_lowres_padded,
    const at::Tensor& hr_pos, const at::Tensor& lr_pos, const at::Tensor& block_map,
    int64_t padding, c10::string_view mode) {
  const char* op = "block_pad_backward";
  const BlockPadArgs checked = check_block_pad_backward_args(grad_highres_padded, grad_lowres_padded, hr_pos,
                                                             lr_pos, block_map, padding, mode);
  const BlockGrid& g = checked.grid;
  const bool replicate = checked.replicate;
  check_layout_values_cpu(op, hr_pos, lr_pos, &block_map, g);
  const at::MemoryFormat format = output_memory_format({grad_highres_padded, grad_lowres_padded});
  const auto options = grad_highres_padded.options().memory_format(format);
  const int64_t h = g.hr_side;
  at::Tensor grad_hr = at::empty({g.num_highres, g.channels, h, h}, options);
  at::Tensor grad_lr = at::empty({g.num_lowres, g.channels, h / 2, h / 2}, options);
  if (grad_hr.numel() + grad_lr.numel() == 0) return {grad_hr, grad_lr};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_highres_padded.scalar_type(),
                                  "segblocks_block_pad_backward_cpu", [&] {
    block_pad_backward_gather<scalar_t>(grad_highres_padded, grad_lowres_padded, grad_hr, grad_lr,
                                        hr_p.data_ptr<int64_t>(), lr_p.data_ptr<int64_t>(),
                                        bm.data_ptr<int32_t>(), g, padding, replicate);
  });
  return {grad_hr, grad_lr};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("block_pad", &block_pad_kernel);
  m.impl("block_pad_units", &block_pad_units_kernel);
  m.impl("block_pad_ring_", &block_pad_ring_kernel);
  m.impl("block_pad_backward", &block_pad_backward_kernel);
}

}  // namespace cpu
}  // namespace segblocks
