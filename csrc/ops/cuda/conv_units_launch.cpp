// conv3x3_units on CUDA: checks, device guard, current stream, launch of the torch-free
// kernel in conv_units_kernel.cu, and the CUDA registration. The kernel's limits (half or
// bfloat16, channels_last 16-byte packs, Ci % 16, Co % 64, output units of at most 64 px a
// side, sm_80+) are errors here;
// segblocks_core.ops.conv3x3_units_supported tells the executor beforehand.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/conv_units.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

void check_packed(const char* op, const char* name, const at::Tensor& t, bool empty) {
  const int64_t bytes = kConvPack * static_cast<int64_t>(t.element_size());
  TORCH_CHECK(packable(t.const_data_ptr(), layout_strides_of(t), kConvPack, bytes, empty), op, ": ", name,
              " must be channels_last with 16-byte aligned channel packs, got strides ", t.strides());
}

at::Tensor conv3x3_units_cuda(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                              const at::Tensor& lr_pos, const at::Tensor& block_map, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                              bool relu, bool quartered, int64_t stride, const std::optional<at::Tensor>& pre_scale,
                              const std::optional<at::Tensor>& pre_shift, int64_t splits) {
  const char* op = "conv3x3_units";
  const BlockPadArgs checked = check_conv3x3_units_args(highres, lowres, hr_pos, lr_pos, block_map, weight, bias,
                                                        residual, quartered, stride, pre_scale, pre_shift);
  const BlockGrid& g = checked.grid;
  check_cuda_tensor(op, "highres", highres);
  TORCH_CHECK(highres.scalar_type() == at::kHalf || highres.scalar_type() == at::kBFloat16, op,
              ": the CUDA kernel runs half and bfloat16 (tensor cores), got ", highres.scalar_type());
  const int64_t cout = weight.size(0);
  TORCH_CHECK(g.channels % kConvBK == 0 && cout % kConvBN == 0, op, ": the CUDA kernel needs input channels a ",
              "multiple of ", kConvBK, " and output channels a multiple of ", kConvBN, ", got ", g.channels, " -> ",
              cout);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, highres.get_device()));
  TORCH_CHECK(major >= 8, op, ": the CUDA kernel needs compute capability 8.0 or newer, got ", major, ".x");
  check_packed(op, "highres", highres, g.num_highres == 0);
  check_packed(op, "lowres", lowres, g.num_lowres == 0);
  // [Co, 3, 3, Ci] contiguous: K is contiguous per output channel
  const at::Tensor w = weight.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const at::Tensor ps = pre_scale.has_value() ? pre_scale->contiguous() : at::Tensor();
  const at::Tensor pt = pre_shift.has_value() ? pre_shift->contiguous() : at::Tensor();
  const int64_t uo = (g.hr_side / 2 - 1) / stride + 1;
  TORCH_CHECK(uo <= kConvMaxSide, op, ": the CUDA kernel needs output units of at most ", kConvMaxSide,
              " px a side, got ", uo);
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, cout, uo, uo},
                             highres.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  at::Tensor z;
  if (residual.has_value()) {
    z = residual->contiguous(at::MemoryFormat::ChannelsLast);
    check_packed(op, "residual", z, false);
  }
  for (const at::Tensor* t : {&w, &b, &ps, &pt}) {
    TORCH_CHECK(!t->defined() || reinterpret_cast<uintptr_t>(t->const_data_ptr()) % 16 == 0, op,
                ": weight, bias, pre_scale and pre_shift must be 16-byte aligned");
  }
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({highres, lowres, out}, g);
  // split-K in whole chunks (0: chosen for this GPU): the deep layers have few output
  // tiles, each a long K loop
  TORCH_CHECK(splits >= 0, op, ": splits must be >= 0 (0: automatic), got ", splits);
  const int64_t chunks = g.channels / kConvBK;
  const ConvTiling tiling = conv_tiling(out.size(0), g.hr_side / 2, stride);
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, highres.get_device()));
  if (splits == 0) splits = conv_units_auto_splits(tiling.m_tiles * (cout / kConvBN), chunks, sms);
  const ConvSplitPlan plan = conv_units_split_plan(chunks, splits);
  at::Tensor partial;
  if (plan.splits > 1) partial = at::empty({plan.splits, out.numel()}, highres.options().dtype(at::kFloat));
  const at::Tensor table = at::empty({conv_units_table_bytes(tiling)}, highres.options().dtype(at::kByte));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_REDUCED_FLOATING_TYPES(highres.scalar_type(), "segblocks_conv3x3_units_cuda", [&] {
    C10_CUDA_CHECK(launch_conv3x3_units(
        cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres), strides_of(lowres),
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g,
        cuda_data<scalar_t>(w), b.defined() ? cuda_data<scalar_t>(b) : nullptr,
        z.defined() ? cuda_data<scalar_t>(z) : nullptr, cuda_mutable_data<scalar_t>(out), cout, relu, quartered,
        stride, ps.defined() ? cuda_data<scalar_t>(ps) : nullptr, pt.defined() ? cuda_data<scalar_t>(pt) : nullptr,
        plan.splits, table.mutable_data_ptr(), partial.defined() ? partial.mutable_data_ptr<float>() : nullptr,
        index32, sms, stream));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) { m.impl("conv3x3_units", &conv3x3_units_cuda); }

}  // namespace cuda
}  // namespace segblocks
