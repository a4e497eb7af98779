// relu(conv2d(x, w) + bias + residual) on Hopper with CUTLASS 3 (sm90: wgmma, TMA im2col),
// written into any NHWC view: the output's and the residual's strides are arguments, so the
// convolution can write the interiors of its consumer's BlockPad-ed tiles, which cuDNN cannot
// (benchmarks/cudnn_strided_probe.py); BlockPad then fills only their 1-px ring
// (benchmarks/cutlass_conv_probe.py measured it). Built only with CUTLASS headers and for
// sm_90a (setup.py); torch-free, like the other kernels: conv_cutlass_launch.cpp checks the
// tensors and calls launch_conv_cutlass<Config>. The persistent configurations are in
// conv_cutlass_persistent.cuh: a translation unit must not include both kinds (the GEMM
// device adapter they need brings CUTLASS 2's GemmUniversal, which CUTLASS's own
// convolution kernel, ConvUniversal, then also matches).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
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
#include "ops/cuda/pdl.cuh"

namespace segblocks {
namespace cuda {

using ConvShape2d = cutlass::conv::ConvProblemShape<cutlass::conv::Operator::kFprop, 2>;

// The epilogue of every configuration: relu(acc + bias + beta * residual), float16 out, the
// output and residual NHWC with any {n, h, w} strides.
template <class TileShape, class Schedule>
using ConvCutlassEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, cute::Shape<cute::_1, cute::_1, cute::_1>,
    cutlass::epilogue::collective::EpilogueTileAuto, float, float, cutlass::half_t, cutlass::layout::TensorNHWC, 8,
    cutlass::half_t, cutlass::layout::TensorNHWC, 8, Schedule,
    cutlass::epilogue::fusion::LinCombPerColBiasEltAct<cutlass::epilogue::thread::ReLu, cutlass::half_t, float,
                                                       cutlass::half_t, cutlass::half_t, float>>::CollectiveOp;

inline ConvShape2d conv_shape(const ConvCutlassProblem& p) {
  return ConvShape2d(cutlass::conv::Mode::kCrossCorrelation, {p.n, p.h, p.w, p.c}, {p.k, p.r, p.s, p.c},
                     {p.padding, p.padding}, {p.padding, p.padding}, {p.stride, p.stride}, {1, 1}, 1);
}

// Fills a CUTLASS epilogue's arguments (ptr_C, dC, ptr_D, dD, thread) for problem p.
template <class EpilogueArguments>
void set_epilogue_arguments(EpilogueArguments& epi, const ConvCutlassProblem& p) {
  using Half = cutlass::half_t;
  const int64_t* rs = p.residual != nullptr ? p.residual_strides : p.out_strides;
  cute::get<0, 0>(epi.dD) = p.out_strides[2];
  cute::get<0, 1>(epi.dD) = p.out_strides[1];
  cute::get<0, 2>(epi.dD) = p.out_strides[0];
  cute::get<0, 0>(epi.dC) = rs[2];
  cute::get<0, 1>(epi.dC) = rs[1];
  cute::get<0, 2>(epi.dC) = rs[0];
  epi.ptr_C = static_cast<const Half*>(p.residual);
  epi.ptr_D = static_cast<Half*>(p.out);
  epi.thread.alpha = 1.f;
  epi.thread.beta = p.residual != nullptr ? 1.f : 0.f;
  epi.thread.bias_ptr = static_cast<const Half*>(p.bias);
}

// Thread-block tile M x N x K (M: output pixels, N: output channels, K: input channels per
// tap) and pipeline stages (0: as many as shared memory holds; fewer leave room for two or
// three resident thread blocks, whose epilogues then overlap the others' main loops).
// CUTLASS's own convolution kernel: one thread block per output tile.
template <int kM, int kN, int kK, int kStages>
struct ConvCutlassConfig {
  // CUTLASS 4.2's convolution kernel has no griddepcontrol.wait: never launched early (pdl.cuh)
  static constexpr bool kProgrammatic = false;
  using Half = cutlass::half_t;
  using TileShape = cute::Shape<cute::Int<kM>, cute::Int<kN>, cute::Shape<cute::Int<kK>>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  using Epilogue = ConvCutlassEpilogue<TileShape, cutlass::epilogue::TmaWarpSpecialized>;
  using Stages = cute::conditional_t<kStages == 0,
                                     cutlass::conv::collective::StageCountAutoCarveout<static_cast<int>(
                                         sizeof(typename Epilogue::SharedStorage))>,
                                     cutlass::conv::collective::StageCount<kStages>>;
  using Mainloop = typename cutlass::conv::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cutlass::conv::Operator::kFprop, Half,
      cutlass::layout::TensorNHWC, 8, Half, cutlass::layout::TensorNHWC, 8, float, TileShape, ClusterShape, Stages,
      cutlass::conv::collective::KernelScheduleAuto>::CollectiveOp;
  using Kernel = cutlass::conv::kernel::ConvUniversal<ConvShape2d, Mainloop, Epilogue>;
  using Op = cutlass::conv::device::ConvUniversalAdapter<Kernel>;

  static typename Op::Arguments arguments(const ConvCutlassProblem& p) {
    typename Op::Arguments args{};
    args.problem_shape = conv_shape(p);
    args.mainloop = {static_cast<const Half*>(p.x), static_cast<const Half*>(p.weight)};
    set_epilogue_arguments(args.epilogue, p);
    return args;
  }
};

// The workspace bytes the configuration needs for problem p (stream-K's partial sums).
template <class Config>
size_t conv_cutlass_workspace(const ConvCutlassProblem& p) {
  return Config::Op::get_workspace_size(Config::arguments(p));
}

// 0, or the failing step * 1000 + the CUTLASS status (1: can_implement, 2: needs more
// workspace than p.workspace_bytes, 3: initialize, 4: run).
template <class Config>
int launch_conv_cutlass(const ConvCutlassProblem& p, cudaStream_t stream) {
  using Op = typename Config::Op;
  const auto args = Config::arguments(p);
  Op op;
  cutlass::Status st = op.can_implement(args);
  if (st != cutlass::Status::kSuccess) return 1000 + static_cast<int>(st);
  if (Op::get_workspace_size(args) > p.workspace_bytes) return 2000;
  st = op.initialize(args, p.workspace, stream);
  if (st != cutlass::Status::kSuccess) return 3000 + static_cast<int>(st);
  if constexpr (Config::kProgrammatic) {
    st = op.run(stream, nullptr, programmatic_launch_enabled());
  } else {
    st = op.run(stream);
  }
  if (st != cutlass::Status::kSuccess) return 4000 + static_cast<int>(st);
  return 0;
}

// Defines launch_conv_cutlass_<name> and workspace_conv_cutlass_<name> (declared by
// conv_cutlass_launch.cpp from configs.h) for one configuration type: one configuration per
// .cu file, so they compile in parallel.
#define SEGBLOCKS_DEFINE_CUTLASS_CONV(name, ...)                                                 \
  int launch_conv_cutlass_##name(const ConvCutlassProblem& p, cudaStream_t stream) {             \
    return launch_conv_cutlass<__VA_ARGS__>(p, stream);                                         \
  }                                                                                              \
  size_t workspace_conv_cutlass_##name(const ConvCutlassProblem& p) {                            \
    return conv_cutlass_workspace<__VA_ARGS__>(p);                                              \
  }

}  // namespace cuda
}  // namespace segblocks
