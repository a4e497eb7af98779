// Persistent CUTLASS convolutions on Hopper (ping-pong; cooperative with the stream-K tile
// scheduler): the convolution's main loop and epilogue of conv_cutlass.cuh driven by the
// GEMM's persistent kernels. Include this or the configurations of conv_cutlass.cuh in a
// translation unit, not both (see there).
#pragma once

#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"
#include "ops/cuda/cutlass/conv_cutlass.cuh"

namespace segblocks {
namespace cuda {

// Whether this translation unit's GEMM kernels have griddepcontrol (a define, so that the
// host pass, which launches them, sees it too).
#ifdef CUTLASS_ENABLE_GDC_FOR_SM90
static constexpr bool kGdcBuilt = true;
#else
static constexpr bool kGdcBuilt = false;
#endif

// -- Persistent configurations ---------------------------------------------------------
//
// CUTLASS 4.2's convolution kernel launches one thread block per output tile ("Persistent
// schedules not supported for conv yet"), while cuDNN's fastest Hopper kernels are
// persistent: each thread block loops over tiles and overlaps one tile's epilogue with the
// next one's main loop (ping-pong), or splits the K loop of too few tiles over all SMs
// (stream-K). The convolution's main loop (TMA im2col + wgmma) is a collective with the
// GEMM collectives' interface except for two details, which these adapters bridge, so the
// GEMM's persistent kernels drive it unchanged:
// - the GEMM kernels expect a batch mode L on the tiled A and B (the convolution has none:
//   its batch is part of M), and rank-3 strides;
// - their problem shape is the GEMM's (M, N, K, L) for the main loop, the epilogue and the
//   tile scheduler alike, while the convolution's main loop builds its TMA im2col
//   descriptors from the convolution's shape and its epilogue from the (Q, P, N)-structured
//   one. The adapters' arguments carry the convolution's shape.

// The schedule tags select the GEMM's persistent kernels (cutlass::gemm::kernel::GemmUniversal
// dispatches on the main loop's schedule); the convolution collective takes any tag.
struct ConvPingpongSchedule : cutlass::gemm::KernelTmaWarpSpecializedPingpong {};
struct ConvCooperativeSchedule : cutlass::gemm::KernelTmaWarpSpecializedCooperative {};

template <class Conv>
struct GemmFacingConvMainloop : Conv {
  using StrideA = decltype(cute::append<3>(typename Conv::StrideA{}, cute::Int<0>{}));
  using StrideB = decltype(cute::append<3>(typename Conv::StrideB{}, cute::Int<0>{}));
  static constexpr uint32_t NumProducerThreadEvents = 1;  // one elected thread issues the TMA loads
  struct Arguments {
    typename Conv::Arguments conv{};
    ConvShape2d shape{};
  };

  template <class GemmShape>
  static typename Conv::Params to_underlying_arguments(const GemmShape&, const Arguments& args, void* workspace) {
    return Conv::to_underlying_arguments(args.shape, args.conv, workspace);
  }
  template <class GemmShape>
  static bool can_implement(const GemmShape&, const Arguments& args) {
    return Conv::can_implement(args.shape, args.conv);
  }

  // A and B tiled as (BLK, BLK_K, m or n, k) with a batch mode of extent 1 appended.
  template <class ProblemShapeMNKL>
  CUTLASS_DEVICE auto load_init(const ProblemShapeMNKL& shape, const typename Conv::Params& params) {
    auto inputs = Conv::load_init(shape, params);
    return cute::make_tuple(with_batch(cute::get<0>(inputs)), with_batch(cute::get<1>(inputs)));
  }

  template <class TensorA, class TensorB, class KTileIterator, class BlockCoord>
  CUTLASS_DEVICE void load(const typename Conv::Params& params, typename Conv::MainloopPipeline pipeline,
                           typename Conv::PipelineState state, const cute::tuple<TensorA, TensorB>& inputs,
                           const BlockCoord& blk_coord, KTileIterator k_tile_iter, int k_tile_count, int thread_idx,
                           uint32_t block_rank_in_cluster, typename Conv::TensorStorage& shared_tensors) {
    Conv::load(params, pipeline, state,
               cute::make_tuple(without_batch(cute::get<0>(inputs)), without_batch(cute::get<1>(inputs))),
               blk_coord, k_tile_iter, k_tile_count, thread_idx, block_rank_in_cluster, shared_tensors);
  }

 private:
  template <class Layout>
  CUTLASS_DEVICE static auto with_unit_mode(const Layout& layout) {
    if constexpr (cute::is_composed_layout<Layout>::value) {  // A's im2col: the outer layout gets it
      return cute::make_composed_layout(layout.layout_a(), layout.offset(), with_unit_mode(layout.layout_b()));
    } else {
      return cute::append(layout, cute::make_layout(cute::_1{}, cute::_0{}));
    }
  }
  template <class T>
  CUTLASS_DEVICE static auto with_batch(const T& t) {
    return cute::make_tensor(t.data(), with_unit_mode(t.layout()));
  }
  template <class T>
  CUTLASS_DEVICE static auto without_batch(const T& t) {
    return t(cute::_, cute::_, cute::_, cute::_, 0);
  }
};

template <class Epilogue>
struct GemmFacingConvEpilogue : Epilogue {
  using Epilogue::Epilogue;
  struct Arguments {
    typename Epilogue::Arguments epi{};
    ConvShape2d shape{};
  };
  static auto shape_of(const Arguments& args) {
    return cutlass::conv::detail::get_transformed_problem_shape_MNKL(args.shape);
  }
  template <class GemmShape>
  static typename Epilogue::Params to_underlying_arguments(const GemmShape&, const Arguments& args, void* workspace) {
    return Epilogue::to_underlying_arguments(shape_of(args), args.epi, workspace);
  }
  template <class GemmShape>
  static size_t get_workspace_size(const GemmShape&, const Arguments& args) {
    return Epilogue::get_workspace_size(shape_of(args), args.epi);
  }
  template <class GemmShape>
  static cutlass::Status initialize_workspace(const GemmShape&, const Arguments& args, void* workspace,
                                              cudaStream_t stream, cutlass::CudaHostAdapter* adapter = nullptr) {
    return Epilogue::initialize_workspace(shape_of(args), args.epi, workspace, stream, adapter);
  }
  template <class GemmShape>
  static bool can_implement(const GemmShape&, const Arguments& args) {
    return Epilogue::can_implement(shape_of(args), args.epi);
  }
};

// kKind 1: ping-pong (two consumer warp groups alternate tiles, 64-row tiles); kKind 2:
// cooperative (both on one tile of 128 or more rows) with the stream-K tile scheduler;
// kKind 3: cooperative with the plain persistent scheduler (one tile per thread block at a
// time, whole K loops; cuDNN's fastest kernel for 64-channel maps on the H100 has a
// 256-row tile).
template <int kM, int kN, int kK, int kStages, int kKind, int kClusterM = 1, int kClusterN = 1>
struct ConvCutlassPersistentConfig {
  static_assert(kKind >= 1 && kKind <= 3, "kind 1: ping-pong, 2: cooperative stream-K, 3: cooperative");
  // Built with CUTLASS_ENABLE_GDC_FOR_SM90 (defined by the configuration's .cu file), the
  // GEMM kernels wait (griddepcontrol.wait) in every warp role that loads and let the next
  // kernel launch after their main loops: launched programmatically (pdl.cuh). Not stream-K:
  // CUTLASS 4.2's stream-K scheduler does not compile with it.
  static constexpr bool kProgrammatic = kKind != 2 && kGdcBuilt;
  using Half = cutlass::half_t;
  using TileShape = cute::Shape<cute::Int<kM>, cute::Int<kN>, cute::Shape<cute::Int<kK>>>;
  // A cluster of kClusterM x kClusterN thread blocks: the weights' tiles (B) are loaded once
  // by TMA multicast for the kClusterM blocks of one cluster column, the im2col tiles (A) for
  // the kClusterN of one row (less traffic from L2; configs.h says what it measured).
  using ClusterShape = cute::Shape<cute::Int<kClusterM>, cute::Int<kClusterN>, cute::_1>;
  using Schedule = cute::conditional_t<kKind == 1, ConvPingpongSchedule, ConvCooperativeSchedule>;
  using EpilogueSchedule = cute::conditional_t<kKind == 1, cutlass::epilogue::TmaWarpSpecialized,
                                               cutlass::epilogue::TmaWarpSpecializedCooperative>;
  using EpilogueOp = ConvCutlassEpilogue<TileShape, EpilogueSchedule>;
  // kStages 0: as many as shared memory holds next to the epilogue's buffers and the
  // persistent kernel's barriers (1 KB kept for those)
  static constexpr int Stages =
      kStages > 0 ? kStages
                  : cutlass::conv::collective::detail::compute_stage_count_or_override<
                        cutlass::gemm::collective::detail::sm90_smem_capacity_bytes, Half, Half, TileShape>(
                        cutlass::conv::collective::StageCountAutoCarveout<
                            static_cast<int>(sizeof(typename EpilogueOp::SharedStorage)) + 1024>{});
  using Scheduler = cute::conditional_t<kKind == 2, cutlass::gemm::StreamKScheduler, cutlass::gemm::PersistentScheduler>;
  // What the convolution's collective builder makes (K-major A and B, im2col TMA for A),
  // with the persistent schedule tag, which the builder does not accept.
  using AtomLayout = cute::conditional_t<kKind != 1, cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>,
                                         cute::Layout<cute::Shape<cute::_1, cute::_1, cute::_1>>>;
  using TiledMma = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Half, Half, float, TileShape, cute::GMMA::Major::K, cute::GMMA::Major::K>(),
      AtomLayout{}));
  using CopyA = decltype(cutlass::conv::collective::detail::sm90_cluster_shape_to_im2col_tma_atom(
      cute::shape<1>(ClusterShape{})));
  using CopyB = decltype(cutlass::gemm::collective::detail::sm90_cluster_shape_to_tma_atom(
      cute::shape<0>(ClusterShape{})));
  using AtomA = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                         cute::GMMA::Major::K, Half, decltype(cute::get<0>(TileShape{})),
                         decltype(cute::get<2>(TileShape{}))>());
  using AtomB = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                         cute::GMMA::Major::K, Half, decltype(cute::get<1>(TileShape{})),
                         decltype(cute::get<2>(TileShape{}))>());
  using SmemA = decltype(cute::tile_to_shape(
      AtomA{}, cute::make_shape(cute::shape<0>(TileShape{}), cute::shape<2>(TileShape{}), cute::Int<Stages>{}),
      cute::Step<cute::_2, cute::_1, cute::_3>{}));
  using SmemB = decltype(cute::tile_to_shape(
      AtomB{}, cute::make_shape(cute::shape<1>(TileShape{}), cute::shape<2>(TileShape{}), cute::Int<Stages>{}),
      cute::Step<cute::_2, cute::_1, cute::_3>{}));
  using Policy = cutlass::conv::MainloopSm90TmaGmmaWarpSpecializedImplicitGemm<cutlass::conv::Operator::kFprop,
                                                                                Stages, 2, ClusterShape, Schedule>;
  using ConvMainloop = cutlass::conv::collective::CollectiveConv<
      Policy, TileShape, Half, Half, TiledMma, cutlass::conv::collective::detail::Sm90ImplicitGemmTileTraits<CopyA, SmemA>,
      cutlass::conv::collective::detail::Sm90ImplicitGemmTileTraits<CopyB, SmemB>>;
  using Mainloop = GemmFacingConvMainloop<ConvMainloop>;
  using Epilogue = GemmFacingConvEpilogue<EpilogueOp>;
  // (N P Q, K, (C, S, R), 1): the shape the convolution kernel hands its main loop
  using GemmShape = decltype(ConvMainloop::get_problem_shape_MNKL(ConvShape2d{}));
  using Kernel = cutlass::gemm::kernel::GemmUniversal<GemmShape, Mainloop, Epilogue, Scheduler>;
  using Op = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static typename Op::Arguments arguments(const ConvCutlassProblem& p) {
    typename Op::Arguments args{};
    const ConvShape2d shape = conv_shape(p);
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = ConvMainloop::get_problem_shape_MNKL(shape);
    args.mainloop.conv = {static_cast<const Half*>(p.x), static_cast<const Half*>(p.weight)};
    args.mainloop.shape = shape;
    set_epilogue_arguments(args.epilogue.epi, p);
    args.epilogue.shape = shape;
    args.hw_info.device_id = p.device;
    args.hw_info.sm_count = p.sm_count;
    return args;
  }
};

}  // namespace cuda
}  // namespace segblocks
