// upsample_argmax and upsample_argmax_dense on the CPU: the element functions of
// ops/upsample_argmax.h (shared with the CUDA kernels) in an at::parallel_for loop over
// output pixels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/cpu/block_copy.h"
#include "ops/head_checks.h"
#include "ops/upsample_argmax.h"

namespace segblocks {
namespace cpu {
namespace {


at::Tensor upsample_argmax_kernel(const at::Tensor& highres, const at::Tensor& lowres,
                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                  const at::Tensor& block_map, int64_t factor) {
  const char* op = "upsample_argmax";
  const BlockGrid g = check_upsample_argmax_args(op, highres, lowres, hr_pos, lr_pos, block_map, factor);
  check_layout_values_cpu(op, hr_pos, lr_pos, &block_map, g);
  const int64_t bf = g.hr_side * factor;
  at::Tensor labels = at::empty({g.grid_n, g.grid_h * bf, g.grid_w * bf}, highres.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  const at::Tensor bm = block_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_upsample_argmax_cpu", [&] {
    using Cvt = CpuCvt<scalar_t>;
    using acc_t = typename Cvt::acc_t;
    const UpsampleArgmaxParams<scalar_t, acc_t, Div> prm{
        highres.const_data_ptr<scalar_t>(), strides_of(highres), lowres.const_data_ptr<scalar_t>(),
        strides_of(lowres), labels.mutable_data_ptr<uint8_t>(), bm.const_data_ptr<int32_t>(),
        GridIndexer<Div>(g), Div(bf), Div(g.grid_w * bf), Div(g.grid_h * bf), factor, g.channels,
        static_cast<acc_t>(1.0 / static_cast<double>(factor))};
    for_each_pixel(labels.numel(), prm, &upsample_argmax_element<Cvt, Div>);
  });
  return labels;
}

at::Tensor upsample_argmax_units_kernel(const at::Tensor& units, const at::Tensor& hr_pos,
                                        const at::Tensor& lr_pos, const at::Tensor& block_map, int64_t factor) {
  const char* op = "upsample_argmax_units";
  const BlockGrid g = check_upsample_argmax_units_args(op, units, hr_pos, lr_pos, block_map, factor);
  check_layout_values_cpu(op, hr_pos, lr_pos, &block_map, g);
  const int64_t bf = g.hr_side * factor, uf = g.hr_side / 2 * factor;
  at::Tensor labels = at::empty({g.grid_n, g.grid_h * bf, g.grid_w * bf}, units.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, units.scalar_type(), "segblocks_upsample_argmax_units_cpu", [&] {
    using Cvt = CpuCvt<scalar_t>;
    using acc_t = typename Cvt::acc_t;
    const UpsampleArgmaxUnitsParams<scalar_t, acc_t, Div> prm{
        units.const_data_ptr<scalar_t>(), strides_of(units), labels.mutable_data_ptr<uint8_t>(),
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), GridIndexer<Div>(g), Div(uf * uf),
        Div(uf), 4 * g.num_highres, factor, g.channels, static_cast<acc_t>(1.0 / static_cast<double>(factor))};
    for_each_pixel(units.size(0) * uf * uf, prm, &upsample_argmax_units_element<Cvt, Div>);
  });
  return labels;
}

at::Tensor upsample_argmax_dense_kernel(const at::Tensor& logits, int64_t factor) {
  check_upsample_argmax_dense_args("upsample_argmax_dense", logits, factor);
  const int64_t n = logits.size(0), h = logits.size(2), w = logits.size(3);
  at::Tensor labels = at::empty({n, h * factor, w * factor}, logits.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "segblocks_upsample_argmax_dense_cpu", [&] {
    using Cvt = CpuCvt<scalar_t>;
    using acc_t = typename Cvt::acc_t;
    const UpsampleArgmaxDenseParams<scalar_t, acc_t, Div> prm{
        logits.const_data_ptr<scalar_t>(), strides_of(logits), labels.mutable_data_ptr<uint8_t>(),
        Div(w * factor), Div(h * factor), h, w, logits.size(1),
        static_cast<acc_t>(h) / static_cast<acc_t>(h * factor),
        static_cast<acc_t>(w) / static_cast<acc_t>(w * factor)};
    for_each_pixel(labels.numel(), prm, &upsample_argmax_dense_element<Cvt, Div>);
  });
  return labels;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("upsample_argmax", &upsample_argmax_kernel);
  m.impl("upsample_argmax_dense", &upsample_argmax_dense_kernel);
  m.impl("upsample_argmax_units", &upsample_argmax_units_kernel);
}

}  // namespace cpu
}  // namespace segblocks
