// upsample_argmax and upsample_argmax_dense on CUDA: checks, device guard, current stream,
// launch of the torch-free kernels in upsample_argmax_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"
#include "ops/head_checks.h"

namespace segblocks {
namespace cuda {
namespace {

at::Tensor upsample_argmax_cuda(const at::Tensor& highres, const at::Tensor& lowres,
                                const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                const at::Tensor& block_map, int64_t factor) {
  const char* op = "upsample_argmax";
  const BlockGrid g = check_upsample_argmax_args(op, highres, lowres, hr_pos, lr_pos, block_map, factor);
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const int64_t bf = g.hr_side * factor;
  at::Tensor labels = at::empty({g.grid_n, g.grid_h * bf, g.grid_w * bf}, highres.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  const at::Tensor bm = block_map.contiguous();
  const bool index32 = fits_index32({highres, lowres, labels}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_upsample_argmax_cuda", [&] {
    C10_CUDA_CHECK(launch_upsample_argmax(cuda_data<scalar_t>(highres), strides_of(highres),
                                          cuda_data<scalar_t>(lowres), strides_of(lowres),
                                          labels.mutable_data_ptr<uint8_t>(), bm.const_data_ptr<int32_t>(), g,
                                          factor, index32, stream));
  });
  return labels;
}

at::Tensor upsample_argmax_units_cuda(const at::Tensor& units, const at::Tensor& hr_pos,
                                      const at::Tensor& lr_pos, const at::Tensor& block_map, int64_t factor) {
  const char* op = "upsample_argmax_units";
  const BlockGrid g = check_upsample_argmax_units_args(op, units, hr_pos, lr_pos, block_map, factor);
  check_cuda_tensor(op, "units_padded", units);
  const c10::cuda::CUDAGuard device_guard(units.device());
  const int64_t bf = g.hr_side * factor;
  at::Tensor labels = at::empty({g.grid_n, g.grid_h * bf, g.grid_w * bf}, units.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({units, labels}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, units.scalar_type(), "segblocks_upsample_argmax_units_cuda", [&] {
    C10_CUDA_CHECK(launch_upsample_argmax_units(cuda_data<scalar_t>(units), strides_of(units),
                                                labels.mutable_data_ptr<uint8_t>(), hr_p.const_data_ptr<int64_t>(),
                                                lr_p.const_data_ptr<int64_t>(), g, factor, index32, stream));
  });
  return labels;
}

at::Tensor upsample_argmax_dense_cuda(const at::Tensor& logits, int64_t factor) {
  const char* op = "upsample_argmax_dense";
  check_upsample_argmax_dense_args(op, logits, factor);
  check_cuda_tensor(op, "logits", logits);
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const int64_t n = logits.size(0), h = logits.size(2), w = logits.size(3);
  at::Tensor labels = at::empty({n, h * factor, w * factor}, logits.options().dtype(at::kByte));
  if (labels.numel() == 0) return labels;
  BlockGrid g{};  // for fits_index32: only the cell count matters
  const bool index32 = fits_index32({logits, labels}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "segblocks_upsample_argmax_dense_cuda", [&] {
    C10_CUDA_CHECK(launch_upsample_argmax_dense(cuda_data<scalar_t>(logits), strides_of(logits),
                                                labels.mutable_data_ptr<uint8_t>(), n, logits.size(1), h,
                                                w, factor, index32, stream));
  });
  return labels;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("upsample_argmax", &upsample_argmax_cuda);
  m.impl("upsample_argmax_dense", &upsample_argmax_dense_cuda);
  m.impl("upsample_argmax_units", &upsample_argmax_units_cuda);
}

}  // namespace cuda
}  // namespace segblocks
