// upsample2x_units and upsample2x_dense on the CPU: the element functions of
// ops/upsample2x.h (shared with the CUDA kernels) in an at::parallel_for loop.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"
#include "ops/upsample2x.h"

namespace segblocks {
namespace cpu {
namespace {

template <typename scalar_t>
const scalar_t* skip_data(const std::optional<at::Tensor>& skip) {
  return skip.has_value() ? skip->const_data_ptr<scalar_t>() : nullptr;
}

Strides4 skip_strides(const std::optional<at::Tensor>& skip) {
  return skip.has_value() ? strides_of(*skip) : Strides4{0, 0, 0, 0};
}

// padding > 0: the upsampled (+ epilogue) units, then BlockPad's padded tiles of them
// (the CPU's block_pad_units); the CUDA kernel writes the tiles' interiors directly and fills
// only their frames.
at::Tensor upsample2x_units_kernel(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                                   const at::Tensor& lr_pos, const at::Tensor& block_map, bool quartered,
                                   const std::optional<at::Tensor>& skip, const std::optional<at::Tensor>& post_scale,
                                   const std::optional<at::Tensor>& post_shift, int64_t padding) {
  const BlockPadArgs checked = check_upsample2x_units_args(highres, lowres, hr_pos, lr_pos, block_map, quartered,
                                                           skip, post_scale, post_shift, padding);
  const BlockGrid& g = checked.grid;
  check_layout_values_cpu("upsample2x_units", hr_pos, lr_pos, &block_map, g);
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, g.hr_side, g.hr_side},
                             highres.options().memory_format(format));
  if (out.numel() == 0) {
    const int64_t side = g.hr_side + 2 * padding;
    return at::empty({out.size(0), g.channels, side, side}, highres.options().memory_format(format));
  }
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const at::Tensor scale = post_scale.has_value() ? post_scale->contiguous() : at::Tensor();
  const at::Tensor shift = post_shift.has_value() ? post_shift->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_upsample2x_units_cpu", [&] {
    const Upsample2xUnitsParams<scalar_t, Div> prm{
        units_input<scalar_t>(highres, lowres, hr_p, lr_p, bm, quartered ? g.hr_side / 2 : 0),
        skip_data<scalar_t>(skip),
        skip_strides(skip),
        out.mutable_data_ptr<scalar_t>(),
        strides_of(out),
        {scale.defined() ? scale.const_data_ptr<scalar_t>() : nullptr,
         shift.defined() ? shift.const_data_ptr<scalar_t>() : nullptr},
        GridIndexer<Div>(g),
        Div(g.channels),
        Div(g.hr_side),
        4 * g.num_highres};
    if (format == at::MemoryFormat::ChannelsLast) {
      for_each_pixel(out.numel(), prm, &upsample2x_units_element<CpuCvt<scalar_t>, true, Div>);
    } else {
      for_each_pixel(out.numel(), prm, &upsample2x_units_element<CpuCvt<scalar_t>, false, Div>);
    }
  });
  if (padding == 0) return out;
  return padded_tiles_of_units(out, hr_pos, lr_pos, block_map, padding, format);
}

at::Tensor upsample2x_dense_kernel(const at::Tensor& x, const std::optional<at::Tensor>& skip) {
  check_upsample2x_dense_args(x, skip);
  const at::MemoryFormat format = output_memory_format({x});
  const int64_t ho = 2 * x.size(2), wo = 2 * x.size(3);
  at::Tensor out = at::empty({x.size(0), x.size(1), ho, wo}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_upsample2x_dense_cpu", [&] {
    const Upsample2xDenseParams<scalar_t, Div> prm{
        x.const_data_ptr<scalar_t>(), strides_of(x), skip_data<scalar_t>(skip), skip_strides(skip),
        out.mutable_data_ptr<scalar_t>(), Div(x.size(1)), Div(wo), Div(ho), x.size(2), x.size(3)};
    if (format == at::MemoryFormat::ChannelsLast) {
      for_each_pixel(out.numel(), prm, &upsample2x_dense_element<CpuCvt<scalar_t>, true, Div>);
    } else {
      for_each_pixel(out.numel(), prm, &upsample2x_dense_element<CpuCvt<scalar_t>, false, Div>);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("upsample2x_units", &upsample2x_units_kernel);
  m.impl("upsample2x_dense", &upsample2x_dense_kernel);
}

}  // namespace cpu
}  // namespace segblocks
