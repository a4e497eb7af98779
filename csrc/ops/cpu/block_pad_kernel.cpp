// block_pad and block_pad_backward on the CPU.
//
//   block_pad(highres [Nh, C, h, h], lowres [Nl, C, h/2, h/2], hr_pos, lr_pos,
//             block_map [N, GH, GW], padding p, mode, value)
//       -> (highres_padded [Nh, C, h+2p, h+2p], lowres_padded [Nl, C, h/2+2p, h/2+2p])
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

template <typename scalar_t>
void block_pad_forward(const at::Tensor& highres, const at::Tensor& lowres, at::Tensor& hr_out,
                       at::Tensor& lr_out, const int64_t* hr_p, const int64_t* lr_p,
                       const int32_t* block_map, const BlockGrid& g, int64_t p, bool replicate,
                       double value, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const BlockView<scalar_t> hr(highres), lr(lowres), hr_o(hr_out), lr_o(lr_out);
  const CpuGridIndexer grid(g);
  const int64_t h = g.hr_side, C = g.channels;
  const int64_t hr_rows = g.num_highres * (h + 2 * p);
  const int64_t lr_rows = g.num_lowres * (h / 2 + 2 * p);
  const scalar_t fill = static_cast<scalar_t>(value);

  // channel c of the value at `src`
  auto fetch = [&](const PadSource<int64_t>& src, int64_t c) -> scalar_t {
    switch (src.kind) {
      case kPadHighres:
        return hr.pixel(src.slot, src.y, src.x)[c * hr.s.c];
      case kPadLowres:
        return lr.pixel(src.slot, src.y, src.x)[c * lr.s.c];
      case kPadHighresMean: {
        const scalar_t* q = hr.pixel(src.slot, src.y, src.x) + c * hr.s.c;
        // same summation order as avg_pool2d in the reference
        const acc_t sum = static_cast<acc_t>(q[0]) + static_cast<acc_t>(q[hr.s.w]) +
                          static_cast<acc_t>(q[hr.s.h]) + static_cast<acc_t>(q[hr.s.h + hr.s.w]);
        return static_cast<scalar_t>(sum * acc_t(0.25));
      }
      default:
        return fill;
    }
  };

  at::parallel_for(0, hr_rows + lr_rows, rows_grain(C * (h + 2 * p)), [&](int64_t begin, int64_t end) {
    std::vector<PadSource<int64_t>> sources;  // per output row: the source of every halo pixel
    for (int64_t item = begin; item < end; ++item) {
      const bool out_lowres = item >= hr_rows;
      const int64_t side = out_lowres ? h / 2 : h;
      const int64_t padded = side + 2 * p;
      const int64_t local = out_lowres ? item - hr_rows : item;
      const int64_t k = local / padded, i = local % padded;
      const CpuCell cell = cell_of_position(out_lowres ? lr_p[k] : hr_p[k], grid);
      const BlockView<scalar_t>& own = out_lowres ? lr : hr;
      const BlockView<scalar_t>& out = out_lowres ? lr_o : hr_o;
      scalar_t* dst = out.pixel(k, i, 0);
      // the block's own pixels fill [p, p + side) of rows p .. p + side - 1
      const bool has_interior = i >= p && i < p + side;
      const int64_t interior_begin = has_interior ? p : padded;
      const int64_t interior_end = has_interior ? p + side : padded;
      sources.resize(padded);
      for (int64_t j = 0; j < padded; ++j) {
        if (j >= interior_begin && j < interior_end) continue;
        sources[j] = pad_source(block_map, grid, cell, out_lowres, i, j, p, replicate);
      }
      const scalar_t* own_row = has_interior ? own.pixel(k, i - p, 0) : nullptr;
      if (channels_last) {
        for (int64_t j = 0; j < padded; ++j) {
          scalar_t* d = dst + j * out.s.w;
          if (j >= interior_begin && j < interior_end) {
            copy_strided(d, out.s.c, own_row + (j - p) * own.s.w, own.s.c, C);
          } else {
            for (int64_t c = 0; c < C; ++c) d[c * out.s.c] = fetch(sources[j], c);
          }
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* d = dst + c * out.s.c;
          for (int64_t j = 0; j < interior_begin; ++j) d[j * out.s.w] = fetch(sources[j], c);
          if (has_interior) {
            copy_strided(d + p * out.s.w, out.s.w, own_row + c * own.s.c, own.s.w, side);
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
  m.impl("block_pad_backward", &block_pad_backward_kernel);
}

}  // namespace cpu
}  // namespace segblocks
