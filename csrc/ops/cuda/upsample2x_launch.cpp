// upsample2x_units and upsample2x_dense on CUDA: checks, device guard, current stream,
// launch of the torch-free kernels in upsample2x_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <optional>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

// The skip's data (nullptr without one) and strides, and the tensors index32 must cover.
template <typename scalar_t>
const typename CudaScalar<scalar_t>::type* skip_data(const std::optional<at::Tensor>& skip) {
  return skip.has_value() ? cuda_data<scalar_t>(*skip) : nullptr;
}

Strides4 skip_strides(const std::optional<at::Tensor>& skip) {
  return skip.has_value() ? strides_of(*skip) : Strides4{0, 0, 0, 0};
}

// The outputs per thread of the units kernel (UpsamplePatch, upsample2x.cuh): chosen by the
// units' side, unless SEGBLOCKS_UPSAMPLE_UNITS_PATCH is "one", "pair" or "quad" (A/B measurements:
// node_profile.py, gpu_round.sh abpatch; gpu_parity.py checks each).
int upsample_units_patch_from_env() {
  const char* v = std::getenv("SEGBLOCKS_UPSAMPLE_UNITS_PATCH");
  // the values of UpsamplePatch (ops/cuda/upsample2x.cuh, a CUDA header)
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return 0;
  if (std::strcmp(v, "one") == 0) return 1;
  if (std::strcmp(v, "pair") == 0) return 2;
  if (std::strcmp(v, "quad") == 0) return 4;
  TORCH_CHECK(false, "SEGBLOCKS_UPSAMPLE_UNITS_PATCH must be auto, one, pair or quad, not '", v, "'");
}

// padding > 0: the output is the padded tiles of a zero-padded convolution; the upsampling
// writes their interiors (a view of them), block_pad_ring their frames.
at::Tensor upsample2x_units_cuda(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                                 const at::Tensor& lr_pos, const at::Tensor& block_map, bool quartered,
                                 const std::optional<at::Tensor>& skip, const std::optional<at::Tensor>& post_scale,
                                 const std::optional<at::Tensor>& post_shift, int64_t padding) {
  const char* op = "upsample2x_units";
  const BlockPadArgs checked = check_upsample2x_units_args(highres, lowres, hr_pos, lr_pos, block_map, quartered,
                                                           skip, post_scale, post_shift, padding);
  const BlockGrid& g = checked.grid;
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t side = g.hr_side + 2 * padding;
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, side, side},
                             highres.options().memory_format(format));
  if (out.numel() == 0) return out;
  at::Tensor interior = out.narrow(2, padding, g.hr_side).narrow(3, padding, g.hr_side);
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const at::Tensor scale = post_scale.has_value() ? post_scale->contiguous() : at::Tensor();
  const at::Tensor shift = post_shift.has_value() ? post_shift->contiguous() : at::Tensor();
  const bool index32 = fits_index32({highres, lowres, out, skip.value_or(out)}, g);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int patch = upsample_units_patch_from_env();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_upsample2x_units_cuda", [&] {
    C10_CUDA_CHECK(launch_upsample2x_units(
        cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres), strides_of(lowres),
        skip_data<scalar_t>(skip), skip_strides(skip), cuda_mutable_data<scalar_t>(interior), strides_of(interior),
        scale.defined() ? cuda_data<scalar_t>(scale) : nullptr, shift.defined() ? cuda_data<scalar_t>(shift) : nullptr,
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g,
        quartered, channels_last, index32, patch, stream));
    if (padding > 0) {
      BlockGrid out_grid = g;  // the output's high-res blocks: one stride finer
      out_grid.hr_side = 2 * g.hr_side;
      C10_CUDA_CHECK(launch_block_pad_ring(cuda_mutable_data<scalar_t>(out), hr_p.const_data_ptr<int64_t>(),
                                           lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), out_grid,
                                           padding,
                                           /*replicate=*/false, 0.0, channels_last, index32, stream));
    }
  });
  return out;
}

at::Tensor upsample2x_dense_cuda(const at::Tensor& x, const std::optional<at::Tensor>& skip) {
  check_upsample2x_dense_args(x, skip);
  check_cuda_tensor("upsample2x_dense", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::MemoryFormat format = output_memory_format({x});
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({n, c, 2 * h, 2 * w}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  BlockGrid g{};  // for fits_index32: only the cell count matters
  const bool index32 = fits_index32({x, out, skip.value_or(out)}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_upsample2x_dense_cuda", [&] {
    C10_CUDA_CHECK(launch_upsample2x_dense(cuda_data<scalar_t>(x), strides_of(x), skip_data<scalar_t>(skip),
                                           skip_strides(skip), cuda_mutable_data<scalar_t>(out), n, c, h, w,
                                           format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("upsample2x_units", &upsample2x_units_cuda);
  m.impl("upsample2x_dense", &upsample2x_dense_cuda);
}

}  // namespace cuda
}  // namespace segblocks
