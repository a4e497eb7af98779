// max_pool_units and max_pool_dense on the CPU: the element functions of ops/max_pool.h
// (shared with the CUDA kernels) in an at::parallel_for loop over output elements.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"
#include "ops/max_pool.h"

namespace segblocks {
namespace cpu {
namespace {

// out_padding > 0: the pooled units, then BlockPad's padded tiles of them (the CPU's
// block_pad_units); the CUDA kernel writes the tiles' interiors directly and fills only their
// frames.
at::Tensor max_pool_units_kernel(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                                 const at::Tensor& lr_pos, const at::Tensor& block_map, int64_t kernel,
                                 int64_t stride, int64_t padding, bool quartered, int64_t out_padding) {
  const char* op = "max_pool_units";
  const BlockPadArgs checked = check_max_pool_units_args(highres, lowres, hr_pos, lr_pos, block_map, kernel,
                                                         stride, padding, quartered, out_padding);
  const BlockGrid& g = checked.grid;
  check_layout_values_cpu(op, hr_pos, lr_pos, &block_map, g);
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t uo = (g.hr_side / 2 + 2 * padding - kernel) / stride + 1;
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, uo, uo},
                             highres.options().memory_format(format));
  if (out.numel() == 0) {
    const int64_t side = uo + 2 * out_padding;
    return at::empty({out.size(0), g.channels, side, side}, highres.options().memory_format(format));
  }
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_max_pool_units_cpu", [&] {
    const MaxPoolUnitsParams<scalar_t, Div> prm{
        units_input<scalar_t>(highres, lowres, hr_p, lr_p, bm, quartered ? g.hr_side / 2 : 0),
        out.mutable_data_ptr<scalar_t>(), strides_of(out), GridIndexer<Div>(g), Div(g.channels), Div(uo),
        4 * g.num_highres, kernel, stride, padding};
    if (channels_last) {
      for_each_pixel(out.numel(), prm, &max_pool_units_element<CpuCvt<scalar_t>, true, Div>);
    } else {
      for_each_pixel(out.numel(), prm, &max_pool_units_element<CpuCvt<scalar_t>, false, Div>);
    }
  });
  if (out_padding == 0) return out;
  return padded_tiles_of_units(out, hr_pos, lr_pos, block_map, out_padding, format);
}

at::Tensor max_pool_dense_kernel(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_max_pool_dense_args("max_pool_dense", x, kernel, stride, padding);
  const at::MemoryFormat format = output_memory_format({x});
  const int64_t ho = (x.size(2) + 2 * padding - kernel) / stride + 1;
  const int64_t wo = (x.size(3) + 2 * padding - kernel) / stride + 1;
  at::Tensor out = at::empty({x.size(0), x.size(1), ho, wo}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_max_pool_dense_cpu", [&] {
    const MaxPoolDenseParams<scalar_t, Div> prm{x.const_data_ptr<scalar_t>(), strides_of(x),
                                                out.mutable_data_ptr<scalar_t>(), Div(x.size(1)), Div(wo), Div(ho),
                                                x.size(2), x.size(3), kernel, stride, padding};
    if (channels_last) {
      for_each_pixel(out.numel(), prm, &max_pool_dense_element<CpuCvt<scalar_t>, true, Div>);
    } else {
      for_each_pixel(out.numel(), prm, &max_pool_dense_element<CpuCvt<scalar_t>, false, Div>);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("max_pool_units", &max_pool_units_kernel);
  m.impl("max_pool_dense", &max_pool_dense_kernel);
}

}  // namespace cpu
}  // namespace segblocks
