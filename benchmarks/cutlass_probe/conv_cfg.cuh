// CUTLASS 3 (sm90, wgmma + TMA im2col) fprop convolution with bias, residual and ReLU in the
// epilogue, whose output (and residual) may be any NHWC view: the probe's question is whether
// it can write straight into the interior of the next convolution's BlockPad-ed tiles at
// cuDNN's speed. Probe code (benchmarks/cutlass_conv_probe.py), not the extension.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/kernel_hardware_info.hpp"
#include "cutlass/conv/convnd_problem_shape.hpp"
#include "cutlass/conv/convolution.h"
#include "cutlass/conv/dispatch_policy.hpp"
#include "cutlass/conv/collective/collective_builder.hpp"
#include "cutlass/conv/kernel/conv_universal.hpp"
#include "cutlass/conv/device/conv_universal_adapter.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"

namespace probe {

using namespace cute;
using Half = cutlass::half_t;

template <class TileShape, int Stages>
struct ConvCfg {
  using FusionOp = cutlass::epilogue::fusion::LinCombPerColBiasEltAct<cutlass::epilogue::thread::ReLu, Half, float,
                                                                      Half, Half, float>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, Shape<_1, _1, _1>,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, Half, cutlass::layout::TensorNHWC, 8, Half,
      cutlass::layout::TensorNHWC, 8, cutlass::epilogue::TmaWarpSpecialized, FusionOp>::CollectiveOp;
  using Mainloop = typename cutlass::conv::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cutlass::conv::Operator::kFprop, Half,
      cutlass::layout::TensorNHWC, 8, Half, cutlass::layout::TensorNHWC, 8, float, TileShape, Shape<_1, _1, _1>,
      cute::conditional_t<Stages == 0,
                          cutlass::conv::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
                          cutlass::conv::collective::StageCount<Stages>>,
      cutlass::conv::collective::KernelScheduleAuto>::CollectiveOp;
  using ProblemShape = cutlass::conv::ConvProblemShape<cutlass::conv::Operator::kFprop, 2>;
  using Kernel = cutlass::conv::kernel::ConvUniversal<ProblemShape, Mainloop, Epilogue>;
  using Conv = cutlass::conv::device::ConvUniversalAdapter<Kernel>;
};

// x [N, H, W, C] packed, w [K, R, S, C] packed, bias [K]; out / res: NHWC views with channel
// stride 1, strides {n, h, w} in elements (res may be null). Returns 0 or a CUTLASS status.
template <class TileShape, int Stages>
int run_conv(const void* x, const void* w, const void* bias, const void* res, void* out, int n, int h, int wd, int c,
             int k, int r, int s, int stride, const int64_t* out_strides, const int64_t* res_strides,
             cudaStream_t stream) {
  using Cfg = ConvCfg<TileShape, Stages>;
  using Conv = typename Cfg::Conv;
  typename Cfg::ProblemShape ps(cutlass::conv::Mode::kCrossCorrelation, {n, h, wd, c}, {k, r, s, c}, {0, 0}, {0, 0},
                                {stride, stride}, {1, 1}, 1);
  typename Conv::ConvKernel::StrideC sc{};
  typename Conv::ConvKernel::StrideD sd{};
  get<0, 0>(sd) = out_strides[2];
  get<0, 1>(sd) = out_strides[1];
  get<0, 2>(sd) = out_strides[0];
  const int64_t* rs = res != nullptr ? res_strides : out_strides;
  get<0, 0>(sc) = rs[2];
  get<0, 1>(sc) = rs[1];
  get<0, 2>(sc) = rs[0];
  typename Conv::Arguments args{};
  args.problem_shape = ps;
  args.mainloop = {static_cast<const Half*>(x), static_cast<const Half*>(w)};
  args.epilogue.ptr_C = static_cast<const Half*>(res);
  args.epilogue.dC = sc;
  args.epilogue.ptr_D = static_cast<Half*>(out);
  args.epilogue.dD = sd;
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = res != nullptr ? 1.f : 0.f;
  args.epilogue.thread.bias_ptr = static_cast<const Half*>(bias);
  Conv op;
  cutlass::Status st = op.can_implement(args);
  if (st != cutlass::Status::kSuccess) return 1000 + int(st);
  if (Conv::get_workspace_size(args) != 0) return 999;
  st = op.initialize(args, nullptr, stream);
  if (st != cutlass::Status::kSuccess) return 2000 + int(st);
  st = op.run(stream);
  if (st != cutlass::Status::kSuccess) return 3000 + int(st);
  return 0;
}

}  // namespace probe
