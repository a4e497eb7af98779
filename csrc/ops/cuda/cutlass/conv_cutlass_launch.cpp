// conv_into_ on CUDA (the extension segblocks_core._cutlass, built with CUTLASS headers for
// sm_90a; setup.py): checks, device guard, current stream, and the CUTLASS kernel of the
// requested configuration (configs.h). Importing the module registers the CUDA kernel of the
// op segblocks_core._C defines; configs() lists the configurations by index.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "ops/conv_into.h"
#include "ops/cuda/cutlass/conv_problem.h"

namespace segblocks {
namespace cuda {

#define SEGBLOCKS_CUTLASS_CONFIG(name)                                                     \
  int launch_conv_cutlass_##name(const ConvCutlassProblem& p, cudaStream_t stream); \
  size_t workspace_conv_cutlass_##name(const ConvCutlassProblem& p);
#include "ops/cuda/cutlass/configs.h"
#undef SEGBLOCKS_CUTLASS_CONFIG

namespace {

using Launch = int (*)(const ConvCutlassProblem&, cudaStream_t);
using Workspace = size_t (*)(const ConvCutlassProblem&);

struct Config {
  std::string name;
  Launch launch;
  Workspace workspace;
};

const std::vector<Config>& configs() {
  static const std::vector<Config> all{
#define SEGBLOCKS_CUTLASS_CONFIG(name) {#name, &launch_conv_cutlass_##name, &workspace_conv_cutlass_##name},
#include "ops/cuda/cutlass/configs.h"
#undef SEGBLOCKS_CUTLASS_CONFIG
  };
  return all;
}

// The CUTLASS kernel's TMA needs 16-byte aligned addresses and strides.
bool aligned16(const at::Tensor& t) {
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  for (int d : {0, 2, 3}) {
    if (t.size(d) > 1 && t.stride(d) % 8 != 0) return false;
  }
  return true;
}

void conv_into_cuda(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                    const std::optional<at::Tensor>& residual, int64_t stride, int64_t padding, int64_t config) {
  const char* op = "conv_into_";
  check_conv_into_args(out, x, weight, bias, residual, stride, padding);
  const auto& all = configs();
  TORCH_CHECK(config >= 0 && config < int64_t(all.size()), op, ": config must be in [0, ", all.size(), "), got ",
              config);
  TORCH_CHECK(x.scalar_type() == at::kHalf, op, ": the CUDA kernel is float16 only, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast) && weight.is_contiguous(at::MemoryFormat::ChannelsLast),
              op, ": x and weight must be channels_last contiguous");
  TORCH_CHECK(bias.is_contiguous(), op, ": bias must be contiguous");
  TORCH_CHECK(x.size(1) % 8 == 0 && weight.size(0) % 8 == 0, op,
              ": input and output channels must be multiples of 8, got ", x.size(1), " and ", weight.size(0));
  for (const at::Tensor* t : {&x, &weight, &bias}) {
    TORCH_CHECK(reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0, op, ": x, weight and bias must be 16-byte aligned");
  }
  TORCH_CHECK(out.stride(1) == 1 && aligned16(out), op,
              ": out must have channel stride 1, other strides multiples of 8 and a 16-byte aligned start, got strides ",
              out.strides());
  if (residual.has_value()) {
    TORCH_CHECK(residual->stride(1) == 1 && aligned16(*residual), op,
                ": residual must have channel stride 1, other strides multiples of 8 and a 16-byte aligned start, "
                "got strides ", residual->strides());
  }
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  int major = 0, minor = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, x.get_device()));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, x.get_device()));
  TORCH_CHECK(major == 9 && minor == 0, op, ": the CUTLASS kernels are built for sm_90a (Hopper), this GPU is sm_",
              major, minor);
  ConvCutlassProblem p{};
  p.x = x.data_ptr();
  p.weight = weight.data_ptr();
  p.bias = bias.data_ptr();
  p.residual = residual.has_value() ? residual->data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.n = int(x.size(0));
  p.h = int(x.size(2));
  p.w = int(x.size(3));
  p.c = int(x.size(1));
  p.k = int(weight.size(0));
  p.r = int(weight.size(2));
  p.s = int(weight.size(3));
  p.stride = int(stride);
  p.padding = int(padding);
  p.out_strides[0] = out.stride(0);
  p.out_strides[1] = out.stride(2);
  p.out_strides[2] = out.stride(3);
  if (residual.has_value()) {
    p.residual_strides[0] = residual->stride(0);
    p.residual_strides[1] = residual->stride(2);
    p.residual_strides[2] = residual->stride(3);
  }
  p.device = x.get_device();
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&p.sm_count, cudaDevAttrMultiProcessorCount, p.device));
  // stream-K's partial sums: freed when this returns, reused only by later work on this
  // stream (the caching allocator's stream order), so the kernel owns it until it ends
  at::Tensor workspace;
  const size_t bytes = all[config].workspace(p);
  if (bytes > 0) {
    workspace = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
    p.workspace = workspace.data_ptr();
    p.workspace_bytes = bytes;
  }
  const int rc = all[config].launch(p, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(rc == 0, op, ": CUTLASS configuration ", all[config].name, " cannot run this problem (step ", rc / 1000,
              ", status ", rc % 1000, ") for x ", x.sizes(), ", weight ", weight.sizes(), ", stride ", stride,
              ", padding ", padding);
  C10_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) { m.impl("conv_into_", &conv_into_cuda); }

}  // namespace cuda
}  // namespace segblocks

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "CUTLASS (sm_90a) kernels of torch.ops.segblocks.conv_into_";
  m.def("configs", [] {
    std::vector<std::string> names;
    for (const auto& c : segblocks::cuda::configs()) names.push_back(c.name);
    return names;
  }, "The kernel configurations, by config index");
}
