// relu(conv2d(x, w) + bias + residual) on Hopper with CUTLASS 3 (sm90: wgmma, TMA im2col),
// written into any NHWC view: the output's and the residual's strides are arguments, so the
// convolution can write the interiors of its consumer's BlockPad-ed tiles, which cuDNN cannot
// (benchmarks/cudnn_strided_probe.py); BlockPad then fills only their 1-px ring
// (benchmarks/cutlass_conv_probe.py measured it). Built only with CUTLASS headers and for
// sm_90a (setup.py); torch-free, like the other kernels: conv_cutlass_launch.cpp checks the
// tensors and calls launch_conv_cutlass<Config>.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/kernel_hardware_info.hpp"
#include "cutlass/conv/collective/collective_builder.hpp"
#include "cutlass/conv/convnd_problem_shape.hpp"
#include "cutlass/conv/convolution.h"
#include "cutlass/conv/device/conv_universal_adapter.hpp"
#include "cutlass/conv/dispatch_policy.hpp"
#include "cutlass/conv/kernel/conv_universal.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "ops/cuda/cutlass/conv_problem.h"

namespace segblocks {
namespace cuda {

// Thread-block tile M x N x K (M: output pixels, N: output channels, K: input channels per
// tap) and pipeline stages (0: as many as shared memory holds; fewer leave room for two or
// three resident thread blocks, whose epilogues then overlap the others' main loops).
template <int kM, int kN, int kK, int kStages>
struct ConvCutlassConfig {
  using Half = cutlass::half_t;
  using TileShape = cute::Shape<cute::Int<kM>, cute::Int<kN>, cute::Shape<cute::Int<kK>>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  using FusionOp = cutlass::epilogue::fusion::LinCombPerColBiasEltAct<cutlass::epilogue::thread::ReLu, Half, float,
                                                                      Half, Half, float>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, Half, cutlass::layout::TensorNHWC, 8, Half,
      cutlass::layout::TensorNHWC, 8, cutlass::epilogue::TmaWarpSpecialized, FusionOp>::CollectiveOp;
  using Stages = cute::conditional_t<kStages == 0,
                                     cutlass::conv::collective::StageCountAutoCarveout<static_cast<int>(
                                         sizeof(typename Epilogue::SharedStorage))>,
                                     cutlass::conv::collective::StageCount<kStages>>;
  using Mainloop = typename cutlass::conv::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cutlass::conv::Operator::kFprop, Half,
      cutlass::layout::TensorNHWC, 8, Half, cutlass::layout::TensorNHWC, 8, float, TileShape, ClusterShape, Stages,
      cutlass::conv::collective::KernelScheduleAuto>::CollectiveOp;
  using ProblemShape = cutlass::conv::ConvProblemShape<cutlass::conv::Operator::kFprop, 2>;
  using Kernel = cutlass::conv::kernel::ConvUniversal<ProblemShape, Mainloop, Epilogue>;
  using Conv = cutlass::conv::device::ConvUniversalAdapter<Kernel>;
};

// 0, or the failing step * 1000 + the CUTLASS status (1: can_implement, 2: needs a
// workspace, 3: initialize, 4: run).
template <class Config>
int launch_conv_cutlass(const ConvCutlassProblem& p, cudaStream_t stream) {
  using Conv = typename Config::Conv;
  using Half = typename Config::Half;
  typename Config::ProblemShape shape(cutlass::conv::Mode::kCrossCorrelation, {p.n, p.h, p.w, p.c},
                                      {p.k, p.r, p.s, p.c}, {p.padding, p.padding}, {p.padding, p.padding},
                                      {p.stride, p.stride}, {1, 1}, 1);
  typename Conv::ConvKernel::StrideC stride_c{};
  typename Conv::ConvKernel::StrideD stride_d{};
  const int64_t* rs = p.residual != nullptr ? p.residual_strides : p.out_strides;
  cute::get<0, 0>(stride_d) = p.out_strides[2];
  cute::get<0, 1>(stride_d) = p.out_strides[1];
  cute::get<0, 2>(stride_d) = p.out_strides[0];
  cute::get<0, 0>(stride_c) = rs[2];
  cute::get<0, 1>(stride_c) = rs[1];
  cute::get<0, 2>(stride_c) = rs[0];
  typename Conv::Arguments args{};
  args.problem_shape = shape;
  args.mainloop = {static_cast<const Half*>(p.x), static_cast<const Half*>(p.weight)};
  args.epilogue.ptr_C = static_cast<const Half*>(p.residual);
  args.epilogue.dC = stride_c;
  args.epilogue.ptr_D = static_cast<Half*>(p.out);
  args.epilogue.dD = stride_d;
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = p.residual != nullptr ? 1.f : 0.f;
  args.epilogue.thread.bias_ptr = static_cast<const Half*>(p.bias);
  Conv op;
  cutlass::Status st = op.can_implement(args);
  if (st != cutlass::Status::kSuccess) return 1000 + static_cast<int>(st);
  if (Conv::get_workspace_size(args) != 0) return 2000;
  st = op.initialize(args, nullptr, stream);
  if (st != cutlass::Status::kSuccess) return 3000 + static_cast<int>(st);
  st = op.run(stream);
  if (st != cutlass::Status::kSuccess) return 4000 + static_cast<int>(st);
  return 0;
}

// Defines launch_conv_cutlass_M_N_K_S (declared by conv_cutlass_launch.cpp from
// configs.h): one configuration per .cu file, so they compile in parallel.
#define SEGBLOCKS_DEFINE_CUTLASS_CONV(m, n, k, s)                                                       \
  int launch_conv_cutlass_##m##_##n##_##k##_##s(const ConvCutlassProblem& p, cudaStream_t stream) { \
    return launch_conv_cutlass<ConvCutlassConfig<m, n, k, s>>(p, stream);                            \
  }

}  // namespace cuda
}  // namespace segblocks
