// A 3x3 convolution on units that gathers its halo through an index (segblocks_core.halo)
// instead of reading BlockPad-ed tiles: the GPU probe of benchmarks/gather_conv_probe.py.
//
// out[m, n] = relu(sum_{tap, c} source[index[v(m) + off(tap)], c] * w[n, tap, c] + bias[n]
//                  + residual[m, n])
// where m = (tile, y, x) is an output pixel of the units (side `side`, x fastest), v(m) the
// top-left corner of its 3x3 window in the virtual padded canvas [tiles, si + 2, si + 2]
// (si = side * stride, the input units' side) and off(tap) = r * (si + 2) + s. `source` is
// the units' pixels as rows [rows, C] followed by the frames' 2x2 means and a zero row.
//
// Built from CUTLASS 3's Hopper collectives: the cp.async warp-specialized wgmma mainloop
// (its consumer side as it is; the producer side is this file's: each producer thread
// looks up its A rows' nine source rows in the index once per tile and copies their
// 16-byte chunks with cp.async; the weights come by TMA; with mean_rows given, the
// producers also make the frames' 2x2 means) and the TMA epilogue (bias, residual, ReLU).
// Persistent: each CTA walks output tiles gridDim.x apart, N tiles of one M tile first
// (they gather the same rows).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/arch/mma_sm90.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/pipeline/pipeline.hpp"
#include "problem.h"

namespace gather_probe {

// kLoadGroups producer warp groups. The consumers: kPingpong, two warp groups on alternate
// output tiles (one's epilogue under the other's main loop, in CUTLASS's ping-pong order);
// kCooperative, two warp groups on each tile (64 rows each); else one warp group.
template <int kM, int kN, int kK, int kLoadGroups, bool kPingpong, bool kCooperative = false>
struct GatherConv {
  using Half = cutlass::half_t;
  using TileShape = cute::Shape<cute::Int<kM>, cute::Int<kN>, cute::Int<kK>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  static_assert(!(kPingpong && kCooperative), "one schedule");
  // the mainloop's consumer layout: one warp group per tile, or two (cooperative, 128+ rows)
  using Schedule = cute::conditional_t<kCooperative, cutlass::gemm::KernelCpAsyncWarpSpecializedCooperative,
                                       cutlass::gemm::KernelCpAsyncWarpSpecializedPingpong>;
  using EpilogueSchedule = cute::conditional_t<kCooperative, cutlass::epilogue::TmaWarpSpecializedCooperative,
                                               cutlass::epilogue::TmaWarpSpecialized>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, Half, cutlass::layout::RowMajor, 8, Half,
      cutlass::layout::RowMajor, 8, EpilogueSchedule,
      cutlass::epilogue::fusion::LinCombPerColBiasEltAct<cutlass::epilogue::thread::ReLu, Half, float, Half, Half,
                                                         float>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Half, cutlass::layout::RowMajor, 8, Half,
      cutlass::layout::ColumnMajor, 8, float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      Schedule>::CollectiveOp;

  using TiledMma = typename Mainloop::TiledMma;
  // the producers' A rows: 8 halves (16 B, one cp.async) per thread and row chunk
  using GmemTiledCopyA = decltype(cutlass::gemm::collective::detail::make_simt_gmem_tiled_copy<
                                  cute::Copy_Atom<cute::SM80_CP_ASYNC_CACHEALWAYS<cute::uint128_t>, Half>,
                                  kLoadGroups * cutlass::NumThreadsPerWarpGroup, 8,
                                  cute::Stride<int64_t, cute::_1, int64_t>, cute::Int<kM>, cute::Int<kK>>());
  using MainloopPipeline = typename Mainloop::MainloopPipeline;
  using EpiLoadPipeline = typename Epilogue::LoadPipeline;
  using EpiStorePipeline = typename Epilogue::StorePipeline;

  static constexpr int kLoadWarpGroups = kLoadGroups;
  static constexpr int kMmaThreads = cute::size(TiledMma{});  // per consumer group
  static constexpr int kMmaGroups = kPingpong ? 2 : 1;
  static constexpr int kThreads = kLoadWarpGroups * cutlass::NumThreadsPerWarpGroup + kMmaGroups * kMmaThreads;
  using OrderBarrier = cutlass::OrderedSequenceBarrier<2, 2>;  // ping-pong: main loops, then epilogues

  struct SharedStorage {
    // not a union: the producers load the next tile while the consumers' epilogue runs
    struct TensorStorage : cute::aligned_struct<128, cute::_1> {
      typename Mainloop::TensorStorage mainloop;
      typename Epilogue::TensorStorage epilogue;
    } tensors;
    struct PipelineStorage : cute::aligned_struct<16, cute::_1> {
      alignas(16) typename Mainloop::PipelineStorage mainloop;
      alignas(16) typename Epilogue::PipelineStorage epi_load;
      alignas(16) typename OrderBarrier::SharedStorage order;
    } pipelines;
  };

  // The weights [n, 9c] (K-major) through TMA into the mainloop's B stages: one elected producer
  // thread per stage adds their bytes to the stage's full barrier, which also counts the
  // producers' cp.async arrivals (the A rows)
  using SmemLayoutB = typename Mainloop::SmemLayoutB;
  static auto make_tma_b(const Half* weight, int n, int k) {
    auto tensor = cute::make_tensor(cute::make_gmem_ptr(weight),
                                    cute::make_layout(cute::make_shape(n, k), cute::make_stride(int64_t(k), cute::_1{})));
    return cute::make_tma_copy(cute::SM90_TMA_LOAD{}, tensor, SmemLayoutB{}(cute::_, cute::_, cute::Int<0>{}));
  }
  using TmaB = decltype(make_tma_b(nullptr, 0, 0));
  static constexpr uint32_t kBytesB = kN * kK * sizeof(Half);

  struct Params {
    TmaB tma_b;
    const Half* source;
    const int* index;
    const int* mean_rows;  // nullptr: the source holds the means (halo_means ran)
    int unit_rows, zero_row;
    int side_shift, stride, c, m, n, k;
    typename Mainloop::Params mainloop;  // the consumers' (mma); the operands come through load_tile
    typename Epilogue::Params epilogue;
  };

  static auto problem_shape(const Problem& p) {
    const int m = p.tiles * p.side * p.side;
    return cute::make_shape(m, p.n, 9 * p.c, 1);
  }

  static typename Epilogue::Arguments epilogue_arguments(const Problem& p) {
    typename Epilogue::Arguments epi{};
    epi.thread.alpha = 1.f;
    epi.thread.beta = p.residual != nullptr ? 1.f : 0.f;
    epi.thread.bias_ptr = static_cast<const Half*>(p.bias);
    epi.ptr_C = static_cast<const Half*>(p.residual);
    epi.dC = cute::make_stride(p.residual != nullptr ? p.residual_ld : p.out_ld, cute::_1{}, int64_t(0));
    epi.ptr_D = static_cast<Half*>(p.out);
    epi.dD = cute::make_stride(p.out_ld, cute::_1{}, int64_t(0));
    return epi;
  }

  // 0, or why not: 1 shapes (c % kK, n % kN, side a power of two, stride), 2 the epilogue
  static int check(const Problem& p) {
    if (p.c % kK != 0 || p.n % kN != 0 || p.side < 1 || (p.side & (p.side - 1)) != 0 ||
        (p.stride != 1 && p.stride != 2) || p.tiles < 1)
      return 1;
    if (!Epilogue::can_implement(problem_shape(p), epilogue_arguments(p))) return 2;
    return 0;
  }

  static Params params(const Problem& p) {
    Params out{};
    out.source = static_cast<const Half*>(p.source);
    out.index = p.index;
    out.mean_rows = p.mean_rows;
    out.unit_rows = static_cast<int>(p.unit_rows);
    out.zero_row = static_cast<int>(p.zero_row);
    int shift = 0;
    while ((1 << shift) < p.side) ++shift;
    out.side_shift = shift;
    out.stride = p.stride;
    out.c = p.c;
    out.m = p.tiles * p.side * p.side;
    out.n = p.n;
    out.k = 9 * p.c;
    out.mainloop = Mainloop::to_underlying_arguments(problem_shape(p), typename Mainloop::Arguments{}, nullptr);
    out.tma_b = make_tma_b(static_cast<const Half*>(p.weight), p.n, out.k);
    out.epilogue = Epilogue::to_underlying_arguments(problem_shape(p), epilogue_arguments(p), nullptr);
    return out;
  }

  CUTLASS_HOST_DEVICE static int num_tiles(const Params& p) { return ((p.m + kM - 1) / kM) * (p.n / kN); }

  // The producer warp groups: A rows through the index, B (the weights) as they are.
  CUTLASS_DEVICE static void load_tile(const Params& p, MainloopPipeline& pipeline,
                                       typename Mainloop::PipelineState& state, int m_tile, int n_tile,
                                       int thread_idx, typename Mainloop::TensorStorage& storage) {
    using namespace cute;
    Tensor sA = make_tensor(make_smem_ptr(storage.smem_A.data()), typename Mainloop::SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(storage.smem_B.data()), typename Mainloop::SmemLayoutB{});
    GmemTiledCopyA copy_a;
    auto thr_a = copy_a.get_slice(thread_idx);
    Tensor tAsA = thr_a.partition_D(sA);                                              // (ACPY,ACPY_M,ACPY_K,PIPE)
    Tensor tAcA = thr_a.partition_S(make_identity_tensor(make_shape(Int<kM>{}, Int<kK>{})));
    Tensor mB = p.tma_b.get_tma_tensor(make_shape(p.n, p.k));
    Tensor gB = local_tile(mB, make_shape(Int<kN>{}, Int<kK>{}), make_coord(n_tile, _));  // (BLK_N,BLK_K,k)
    auto cta_tma_b = p.tma_b.get_slice(0);
    Tensor tBgB = cta_tma_b.partition_S(gB);                                          // (TMA,TMA_N,TMA_K,k)
    Tensor tBsB = cta_tma_b.partition_D(sB);                                          // (TMA,TMA_N,TMA_K,PIPE)
    const bool loads_b = thread_idx == 0;
    constexpr int kRowsA = size<1>(tAsA);
    constexpr int kColsA = size<2>(tAsA);

    // each of this thread's A rows: the source rows of its output pixel's nine taps, looked
    // up once per tile (all loads in flight together), -1 past m
    const int side = 1 << p.side_shift;
    const int wide = side * p.stride + 2;
    int rows[kRowsA][9];
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < kRowsA; ++i) {
      const int m = m_tile * kM + get<0>(tAcA(0, i, 0));
      const int tile = m >> (2 * p.side_shift);
      const int y = (m >> p.side_shift) & (side - 1);
      const int x = m & (side - 1);
      const int* window = p.index + tile * wide * wide + p.stride * (y * wide + x);
      CUTLASS_PRAGMA_UNROLL
      for (int tap = 0; tap < 9; ++tap) rows[i][tap] = m < p.m ? __ldg(window + (tap / 3) * wide + tap % 3) : -1;
    }
    Copy_Atom<SM80_CP_ASYNC_CACHEALWAYS<uint128_t>, Half> atom_a;
    const int chunks = p.c / kK;
    const int k_tiles = p.k / kK;
    int tap = 0, chunk = 0;
    for (int kt = 0; kt < k_tiles; ++kt) {
      pipeline.producer_acquire(state);
      const int stage = state.index();
      bool wrote_means = false;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRowsA; ++i) {
        int row = rows[i][0];
        CUTLASS_PRAGMA_UNROLL
        for (int t = 1; t < 9; ++t) row = tap == t ? rows[i][t] : row;
        if (row < 0) continue;
        if (p.mean_rows != nullptr && row >= p.unit_rows && row < p.zero_row) {
          // a 2x2 mean of a low-res block's frame: made here, stored to shared memory
          const int* quad = p.mean_rows + 4 * (row - p.unit_rows);
          const int q0 = __ldg(quad), q1 = __ldg(quad + 1), q2 = __ldg(quad + 2), q3 = __ldg(quad + 3);
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < kColsA; ++j) {
            const int col = chunk * kK + get<1>(tAcA(0, i, j));
            float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            const int qs[4] = {q0, q1, q2, q3};
            CUTLASS_PRAGMA_UNROLL
            for (int q = 0; q < 4; ++q) {
              const uint4 v = __ldg(reinterpret_cast<const uint4*>(p.source + int64_t(qs[q]) * p.c + col));
              const Half* h = reinterpret_cast<const Half*>(&v);
              CUTLASS_PRAGMA_UNROLL
              for (int e = 0; e < 8; ++e) sum[e] += float(h[e]);
            }
            Tensor dst = tAsA(_, i, j, stage);
            CUTLASS_PRAGMA_UNROLL
            for (int e = 0; e < 8; ++e) dst(e) = Half(0.25f * sum[e]);
          }
          wrote_means = true;
          continue;
        }
        const Half* base = p.source + int64_t(row) * p.c + chunk * kK;
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < kColsA; ++j) {
          Tensor src = make_tensor(make_gmem_ptr(base + get<1>(tAcA(0, i, j))), Layout<Shape<Int<8>>>{});
          copy(atom_a, src, tAsA(_, i, j, stage));
        }
      }
      // shared-memory stores, read by wgmma (the async proxy) after the stage's barrier
      if (wrote_means) cutlass::arch::fence_view_async_shared();
      if (loads_b) {
        auto* full = pipeline.producer_get_barrier(state);
        cutlass::arch::ClusterTransactionBarrier::expect_transaction(full, kBytesB);
        copy(p.tma_b.with(*full), tBgB(_, _, _, kt), tBsB(_, _, _, stage));
      }
      pipeline.producer_commit(state, cutlass::arch::cpasync_barrier_arrive);
      ++state;
      if (++chunk == chunks) {
        chunk = 0;
        ++tap;
      }
    }
  }

  CUTLASS_DEVICE void operator()(const Params& p, char* smem_buf) {
    using namespace cute;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    SharedStorage& shared = *reinterpret_cast<SharedStorage*>(smem_buf);
    const int thread_idx = int(threadIdx.x);
    const int mma_thread_idx = thread_idx % kMmaThreads;
    const int wg_thread_idx = thread_idx % cutlass::NumThreadsPerWarpGroup;
    const bool producer = cutlass::canonical_warp_group_idx() < kLoadWarpGroups;
    const bool epilogue_loader = producer && cutlass::canonical_warp_idx_sync() == 0;

    typename MainloopPipeline::Params ml_params;
    ml_params.role = producer ? MainloopPipeline::ThreadCategory::Producer : MainloopPipeline::ThreadCategory::Consumer;
    ml_params.producer_arv_count = kLoadWarpGroups * cutlass::NumThreadsPerWarpGroup;
    ml_params.consumer_arv_count = kMmaThreads;
    MainloopPipeline pipeline(shared.pipelines.mainloop, ml_params);

    typename EpiLoadPipeline::Params el_params;
    if (epilogue_loader) el_params.role = EpiLoadPipeline::ThreadCategory::Producer;
    if (!producer) el_params.role = EpiLoadPipeline::ThreadCategory::Consumer;
    el_params.dst_blockid = cute::block_rank_in_cluster();
    el_params.producer_arv_count = cutlass::NumThreadsPerWarp;
    el_params.consumer_arv_count = kMmaThreads;
    if constexpr (Epilogue::RequiresTransactionBytes) {
      el_params.transaction_bytes = p.epilogue.tma_transaction_bytes;
    }
    EpiLoadPipeline epi_load_pipeline(shared.pipelines.epi_load, el_params);
    typename EpiStorePipeline::Params es_params;
    es_params.always_wait = true;
    EpiStorePipeline epi_store_pipeline(es_params);

    const int group = producer ? 0 : (cutlass::canonical_warp_group_idx() - kLoadWarpGroups) * 128 / kMmaThreads;
    typename OrderBarrier::Params order_params;
    order_params.group_id = group;
    order_params.group_size = cutlass::NumThreadsPerWarpGroup;
    OrderBarrier order(shared.pipelines.order, order_params);

    typename Mainloop::PipelineState ml_consumer_state;
    typename Mainloop::PipelineState ml_producer_state = cutlass::make_producer_start_state<MainloopPipeline>();
    typename Epilogue::LoadPipelineState el_consumer_state;
    typename Epilogue::LoadPipelineState el_producer_state = cutlass::make_producer_start_state<EpiLoadPipeline>();
    typename Epilogue::StorePipelineState es_producer_state = cutlass::make_producer_start_state<EpiStorePipeline>();

    auto problem = make_shape(p.m, p.n, p.k, 1);
    auto blk_shape = TileShape{};
    TiledMma tiled_mma;
    Mainloop mainloop;
    Epilogue epilogue{p.epilogue, shared.tensors.epilogue};
    const int n_tiles = p.n / kN;
    const int tiles = num_tiles(p);
    const int k_tiles = p.k / kK;
    const int c_count = Epilogue::get_load_pipe_increment(blk_shape);
    const int d_count = Epilogue::get_store_pipe_increment(blk_shape);
    __syncthreads();

    if (producer) {
      for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int m_tile = t / n_tiles, n_tile = t % n_tiles;
        load_tile(p, pipeline, ml_producer_state, m_tile, n_tile, thread_idx, shared.tensors.mainloop);
        if (epilogue_loader && epilogue.is_producer_load_needed()) {
          epilogue.load(epi_load_pipeline, el_producer_state, problem, blk_shape, make_coord(m_tile, n_tile, _, 0),
                        tiled_mma, wg_thread_idx, shared.tensors.epilogue);
          el_producer_state.advance(c_count);
        }
      }
      mainloop.load_tail(pipeline, ml_producer_state);
      if (epilogue_loader && epilogue.is_producer_load_needed()) {
        epilogue.load_tail(epi_load_pipeline, el_producer_state);
      }
    } else if constexpr (kPingpong) {
      // group g takes this CTA's tiles g, g + 2, ...; its pipeline states skip the other's
      if (group == 1) {
        ml_consumer_state.advance(k_tiles);
        el_consumer_state.advance(c_count);
        es_producer_state.advance(d_count);
      }
      const int mine = (tiles - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
      for (int local = group; local < mine; local += 2) {
        const int t = int(blockIdx.x) + local * int(gridDim.x);
        const int m_tile = t / n_tiles, n_tile = t % n_tiles;
        auto accumulators = partition_fragment_C(tiled_mma, take<0, 2>(blk_shape));
        order.wait();
        mainloop.mma(pipeline, ml_consumer_state, accumulators, k_tiles, wg_thread_idx, shared.tensors.mainloop,
                     p.mainloop);
        order.arrive();
        mainloop.mma_tail(pipeline, ml_consumer_state, k_tiles);
        ml_consumer_state.advance(2 * k_tiles);
        order.wait();
        auto [el_stored, es_stored] =
            epilogue.store(epi_load_pipeline, el_consumer_state, epi_store_pipeline, es_producer_state, problem,
                           blk_shape, make_coord(m_tile, n_tile, _, 0), accumulators, tiled_mma, wg_thread_idx,
                           shared.tensors.epilogue);
        // the tail per tile, as CUTLASS's TMA ping-pong kernel does: it waits for this group's
        // TMA stores (the other group reuses the epilogue's shared memory next) and, since the
        // residual and the output share their stages (ReuseSmemC: both float16), releases the
        // residual stages the store still held. Without it those stages are never released
        // and the producer's next residual load waits forever (steps/78's hang, presumably:
        // CUTLASS's cp.async ping-pong kernel only waits for the stores here).
        auto [el_done, es_done] = epilogue.store_tail(epi_load_pipeline, el_stored, epi_store_pipeline, es_stored);
        el_consumer_state = el_done;
        es_producer_state = es_done;
        el_consumer_state.advance(c_count);  // past the other group's tile
        es_producer_state.advance(d_count);
        order.arrive();
      }
      // an odd count: group 0's last tile waits in the order barrier for group 1's turns
      if (group == 1 && mine % 2 == 1) {
        order.wait();
        order.arrive();
        order.wait();
        order.arrive();
      }
    } else {
      bool stored = false;
      for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int m_tile = t / n_tiles, n_tile = t % n_tiles;
        auto accumulators = partition_fragment_C(tiled_mma, take<0, 2>(blk_shape));
        mainloop.mma(pipeline, ml_consumer_state, accumulators, k_tiles, mma_thread_idx, shared.tensors.mainloop,
                     p.mainloop);
        mainloop.mma_tail(pipeline, ml_consumer_state, k_tiles);
        ml_consumer_state.advance(k_tiles);
        auto [el_next, es_next] =
            epilogue.store(epi_load_pipeline, el_consumer_state, epi_store_pipeline, es_producer_state, problem,
                           blk_shape, make_coord(m_tile, n_tile, _, 0), accumulators, tiled_mma, mma_thread_idx,
                           shared.tensors.epilogue);
        el_consumer_state = el_next;
        es_producer_state = es_next;
        stored = true;
      }
      if (stored) epilogue.store_tail(epi_load_pipeline, el_consumer_state, epi_store_pipeline, es_producer_state);
    }
#endif
  }
};

template <class Conv>
// __grid_constant__: the TMA descriptors in the parameters must stay in parameter memory (their
// addresses are taken), not be copied to the stack
__global__ void __launch_bounds__(Conv::kThreads, 1) gather_conv_kernel(const __grid_constant__ typename Conv::Params p) {
  extern __shared__ char smem[];
  Conv{}(p, smem);
}

// 0, or the failing step * 1000 + detail (1: check, 2: shared memory attribute, 3: launch).
template <class Conv>
int run(const Problem& p, cudaStream_t stream) {
  const int bad = Conv::check(p);
  if (bad != 0) return 1000 + bad;
  const auto params = Conv::params(p);
  const int smem = static_cast<int>(sizeof(typename Conv::SharedStorage));
  if (cudaFuncSetAttribute(gather_conv_kernel<Conv>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
      cudaSuccess)
    return 2000;
  const int tiles = Conv::num_tiles(params);
  const int grid = tiles < p.sm_count ? tiles : p.sm_count;
  gather_conv_kernel<Conv><<<grid, Conv::kThreads, smem, stream>>>(params);
  if (cudaGetLastError() != cudaSuccess) return 3000;
  return 0;
}

}  // namespace gather_probe
