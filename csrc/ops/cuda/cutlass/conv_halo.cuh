// relu(conv3x3(x) + bias + residual), stride 1, any zero padding, as a halo-tile convolution
// on Hopper (wgmma, TMA): conv_into_'s "halo_*" configurations (configs.h), beside the CUTLASS
// implicit GEMMs. Torch-free like them; conv_cutlass_launch.cpp checks the tensors.
//
// CUTLASS's implicit GEMM (TMA im2col) moves every input pixel from L2 to shared memory once
// per filter tap. Here a job is one 16 x 16 output tile of one image and 64 output channels:
//
// * its (16+2) x (16+2) input pixels of each 64-channel chunk arrive as one TMA box with the
//   128-byte swizzle (one pixel = one 128-byte row). The box starts `padding` px above and to
//   the left of the tile; what lies outside the image the TMA fills with zeros, which is the
//   zero padding. BlockPad-ed units tiles ([T, C, 18, 18], padding 0) are 16 x 16 images of
//   one tile each; a dense map is an image of many.
// * each filter tap feeds the tensor cores from registers: a consumer thread's ldmatrix row is
//   its output pixel's tap-shifted input pixel in the box (an address), conflict-free under the
//   swizzle; wgmma m64n64k16 with A in registers and the tap's [64, 64] weight slab (TMA,
//   128-byte swizzle, K-major descriptor) in shared memory: a ring of stages, or for C = K = 64
//   (kResidentB) all nine taps loaded once per thread block.
// * the epilogue goes through shared memory: a producer thread loads the job's residual by TMA
//   during the main loop, the consumers add accumulators and bias in place, and that thread
//   stores the tile by TMA while they go on; the TMA clips a tile that overhangs the output, and
//   the output and residual may be any views with channel stride 1 (e.g. the interiors of the
//   next convolution's BlockPad-ed tiles).
// * one producer warp group (a TMA thread, the epilogue's thread), two consumer warp groups
//   (128 output pixels each), persistent thread blocks; launched programmatically (pdl.cuh):
//   every thread waits for the previous kernel before its first global access.
//
// Measured in benchmarks/halo_conv_probe.py (the probe this kernel came from; benchmarks/
// PERFORMANCE.md): on SwiftNet-RN18's layer 1 units at 40% (H100) 0.73-0.78x of the fastest
// CUTLASS configuration at batch 4, 0.88-0.91x at batch 1; slower on the deeper layers.
#pragma once

#include <cuda.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cute/arch/copy_sm90_desc.hpp"
#include "cute/arch/copy_sm90_tma.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/arch/reg_reconfig.h"
#include "ops/cuda/cutlass/conv_problem.h"
#include "ops/cuda/cutlass/halo_tile.cuh"
#include "ops/cuda/pdl.cuh"

namespace segblocks {
namespace cuda {
namespace halo {

struct Params {
  CUtensorMap tma_a;             // x: (C, W, H, N), box (64, 18, 18, 1), 128B swizzle
  CUtensorMap tma_b;             // the weights: (9C, K), box (64, 64), 128B swizzle
  CUtensorMap tma_out, tma_res;  // out, residual: (K, Q, P, N), box (64, 16, 16, 1), 128B swizzle
  const __half* bias;
  int has_residual;
  int c, jobs, n_blocks, tiles_x, tiles_per_image, padding;
};

using Wgmma64 = WgmmaRS<64>::Op;

// kBStages weight stages (a ring of [64, 64] slabs, one per tap and chunk); kResidentB: C = K =
// 64 (SwiftNet's layer 1), the nine taps' slabs loaded once per thread block; kPrefetchA: three
// A fragment sets, each tap's ldmatrix issued under the previous tap's wgmmas (the probe's
// Nsight Compute: the wgmmas' top stall was waiting for their ldmatrix).
template <int kBStages, bool kResidentB, bool kPrefetchA>
struct HaloConv {
  static constexpr int kS = 16;       // output tile side
  static constexpr int kW = kS + 2;   // input box side
  static constexpr int kM = kS * kS;  // output pixels per job: two consumer groups, 128 each
  static constexpr int kNB = 64;      // output channels per job
  static constexpr int kMT = kM / 128;  // m64 tiles per consumer warp group
  static constexpr int kAcc = kNB / 2;  // accumulators per thread per m64 tile
  static constexpr int kABuf = (kW * kW * 128 + 1023) / 1024 * 1024;
  static constexpr int kBBytes = kNB * 128;
  static constexpr int kEBytes = kM * kNB * 2;
  static constexpr int kThreads = 384;
  static constexpr int kBars = 4 + 2 * kBStages + 2;
  static constexpr int kSmem = 2 * kABuf + kBStages * kBBytes + kEBytes + kBars * 8 + 1024;
  static_assert(!kResidentB || kBStages == 9, "resident weights: a stage per tap");
  static_assert(kSmem <= 232448, "shared memory");

  // 0, or why not: 1 the problem's shape
  static int check(const ConvCutlassProblem& p) {
    if (p.stride != 1 || p.r != 3 || p.s != 3 || p.c % 64 != 0 || p.k % kNB != 0 || p.padding < 0) return 1;
    if (kResidentB && (p.c != 64 || p.k != kNB)) return 1;
    if (p.h + 2 * p.padding < 3 || p.w + 2 * p.padding < 3) return 1;
    return 0;
  }

  __device__ static void run(const Params& p, char* raw) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Barrier = cutlass::arch::ClusterBarrier;
    using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
    char* smem = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
    char* a_buf = smem;
    char* b_buf = smem + 2 * kABuf;
    char* e_buf = b_buf + kBStages * kBBytes;
    uint64_t* bars = reinterpret_cast<uint64_t*>(e_buf + kEBytes);
    uint64_t* a_full = bars;
    uint64_t* a_empty = bars + 2;
    uint64_t* b_full = bars + 4;
    uint64_t* b_empty = bars + 4 + kBStages;
    uint64_t* e_full = bars + 4 + 2 * kBStages;  // the epilogue buffer holds the job's residual
    uint64_t* e_ready = e_full + 1;              // ... and then its output, to be stored
    const int warp_group = threadIdx.x / 128;
    const int chunks = p.c / 64;
    // a job: (image, tile row, tile column) major, its 64-channel output block minor
    auto n0_of = [&](int job) { return (job % p.n_blocks) * kNB; };
    auto tile_of = [&](int job, int& image, int& x0, int& y0) {
      const int t = job / p.n_blocks;
      image = t / p.tiles_per_image;
      const int r = t % p.tiles_per_image;
      y0 = (r / p.tiles_x) * kS;
      x0 = (r % p.tiles_x) * kS;
    };

    if (threadIdx.x == 0) {
      for (int i = 0; i < 2; ++i) {
        TxBarrier::init(&a_full[i], 1);
        Barrier::init(&a_empty[i], 2);
      }
      for (int i = 0; i < kBStages; ++i) {
        TxBarrier::init(&b_full[i], 1);
        Barrier::init(&b_empty[i], 2);
      }
      TxBarrier::init(e_full, 1);
      Barrier::init(e_ready, 256);
      cutlass::arch::fence_barrier_init();
    }
    __syncthreads();
    wait_for_prerequisite_grid();  // no global memory access before (pdl.cuh)

    if (warp_group == 0) {
      cutlass::arch::warpgroup_reg_dealloc<40>();
      constexpr uint64_t kHint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
      if (threadIdx.x == 32) {
        // the epilogue's thread: the previous job's output out, then this job's residual in
        int phase = 0, prev = -1;
        auto store = [&]() {
          Barrier::wait(e_ready, phase ^ 1);
          int image, x0, y0;
          tile_of(prev, image, x0, y0);
          cute::SM90_TMA_STORE_4D::copy(&p.tma_out, e_buf, n0_of(prev), x0, y0, image);
          cute::tma_store_arrive();
          cute::tma_store_wait<0>();  // read: the buffer may be refilled
        };
        for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
          if (prev >= 0) store();
          if (p.has_residual) {
            int image, x0, y0;
            tile_of(job, image, x0, y0);
            TxBarrier::arrive_and_expect_tx(e_full, kEBytes);
            cute::SM90_TMA_LOAD_4D::copy(&p.tma_res, e_full, kHint, e_buf, n0_of(job), x0, y0, image);
          } else {
            TxBarrier::arrive(e_full);
          }
          prev = job;
          phase ^= 1;
        }
        if (prev >= 0) store();
        asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
        return;
      }
      if (threadIdx.x != 0) return;
      int a_slot = 0, a_phase = 0, b_slot = 0, b_phase = 0;
      if constexpr (kResidentB) {
        TxBarrier::arrive_and_expect_tx(&b_full[0], 9 * kBBytes);
        for (int tap = 0; tap < 9; ++tap)
          cute::SM90_TMA_LOAD_2D::copy(&p.tma_b, &b_full[0], kHint, b_buf + tap * kBBytes, tap * p.c, 0);
      }
      for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
        int image, x0, y0;
        tile_of(job, image, x0, y0);
        const int n0 = n0_of(job);
        for (int chunk = 0; chunk < chunks; ++chunk) {
          Barrier::wait(&a_empty[a_slot], a_phase ^ 1);
          TxBarrier::arrive_and_expect_tx(&a_full[a_slot], kW * kW * 128);
          // the box from (x0 - padding, y0 - padding): what lies outside the image is zeros
          cute::SM90_TMA_LOAD_4D::copy(&p.tma_a, &a_full[a_slot], kHint, a_buf + a_slot * kABuf, chunk * 64,
                                       x0 - p.padding, y0 - p.padding, image);
          if (++a_slot == 2) {
            a_slot = 0;
            a_phase ^= 1;
          }
          for (int tap = 0; tap < 9 && !kResidentB; ++tap) {
            Barrier::wait(&b_empty[b_slot], b_phase ^ 1);
            TxBarrier::arrive_and_expect_tx(&b_full[b_slot], kBBytes);
            cute::SM90_TMA_LOAD_2D::copy(&p.tma_b, &b_full[b_slot], kHint, b_buf + b_slot * kBBytes,
                                         tap * p.c + chunk * 64, n0);
            if (++b_slot == kBStages) {
              b_slot = 0;
              b_phase ^= 1;
            }
          }
        }
      }
      return;
    }

    cutlass::arch::warpgroup_reg_alloc<232>();
    const int wg = warp_group - 1;            // this consumer group's half of the tile's rows
    const int lane = threadIdx.x % 32;
    const int warp = (threadIdx.x / 32) % 4;  // within the group: rows 16 * warp of each m64 tile
    const bool releases = threadIdx.x % 128 == 0;
    int a_slot = 0, a_phase = 0, b_slot = 0, b_phase = 0;
    // this lane's ldmatrix row (output pixel) in each m64 tile, as a pixel of the input box
    int pix[kMT];
    for (int mt = 0; mt < kMT; ++mt) {
      const int m = wg * (kM / 2) + mt * 64 + warp * 16 + (lane & 15);
      pix[mt] = (m / kS) * kW + m % kS;
    }
    const int khalf = lane >> 4;
    if constexpr (kResidentB) TxBarrier::wait(&b_full[0], 0);

    // The epilogue in shared memory: the residual is there (or nothing, without one); each
    // thread adds its accumulators and the bias in place (128-byte rows, 16-byte chunks
    // swizzled like the TMA's: conflict-free) for the epilogue thread to store.
    auto epilogue_smem = [&](const float (&acc)[kMT][kAcc], int n0) {
      __half2 bv[kNB / 8];
#pragma unroll
      for (int j = 0; j < kNB / 8; ++j) bv[j] = *reinterpret_cast<const __half2*>(p.bias + n0 + 8 * j + 2 * (lane % 4));
      const bool has_res = p.has_residual != 0;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int m = wg * (kM / 2) + mt * 64 + warp * 16 + lane / 4 + 8 * h;
#pragma unroll
          for (int j = 0; j < kNB / 8; ++j) {
            __half2* at = reinterpret_cast<__half2*>(e_buf + m * 128 + ((j ^ (m & 7)) << 4) + 4 * (lane % 4));
            const __half2 r = has_res ? *at : __floats2half2_rn(0.f, 0.f);
            const float v0 = acc[mt][4 * j + 2 * h] + __low2float(bv[j]) + __low2float(r);
            const float v1 = acc[mt][4 * j + 2 * h + 1] + __high2float(bv[j]) + __high2float(r);
            *at = __floats2half2_rn(fmaxf(v0, 0.f), fmaxf(v1, 0.f));
          }
        }
    };

    // One job's main loop into acc.
    auto mainloop = [&](float (&acc)[kMT][kAcc]) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int i = 0; i < kAcc; ++i) acc[mt][i] = 0.f;
      for (int chunk = 0; chunk < chunks; ++chunk) {
        Barrier::wait(&a_full[a_slot], a_phase);
        const uint32_t a_base = smem_u32(a_buf + a_slot * kABuf);
        constexpr int kSets = kPrefetchA ? 3 : 2;
        uint32_t frag[kSets][4][kMT][4];
        auto load_frags = [&](uint32_t (&f)[4][kMT][4], int tap) {
          const int shift = (tap / 3) * kW + tap % 3;
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
              const int q = pix[mt] + shift;
              ldmatrix_x4(f[kk][mt], a_base + q * 128 + ((((kk << 1) | khalf) ^ (q & 7)) << 4));
            }
        };
        auto fence_frags = [&](uint32_t (&f)[4][kMT][4]) {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
              for (int i = 0; i < 4; ++i) cute::warpgroup_fence_operand(f[kk][mt][i]);
        };
        if constexpr (kPrefetchA) load_frags(frag[0], 0);
        int prev_b = -1;
#pragma unroll
        for (int tap = 0; tap < 9; ++tap) {
          if constexpr (!kResidentB) TxBarrier::wait(&b_full[b_slot], b_phase);
          if constexpr (!kPrefetchA) load_frags(frag[tap % kSets], tap);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int i = 0; i < kAcc; ++i) cute::warpgroup_fence_operand(acc[mt][i]);
          cute::warpgroup_arrive();
          const uint32_t b_base = smem_u32(b_buf + (kResidentB ? tap : b_slot) * kBBytes);
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt)
              wgmma_rs<Wgmma64>(frag[tap % kSets][kk][mt], desc_b_sw128(b_base + kk * 32), acc[mt],
                                std::make_index_sequence<kAcc>{});
          cute::warpgroup_commit_batch();
          // the next tap's fragments into the set the tap before last used (its wgmmas are done)
          if constexpr (kPrefetchA) {
            if (tap < 8) load_frags(frag[(tap + 1) % kSets], tap + 1);
          }
          cute::warpgroup_wait<1>();  // the previous tap's wgmmas are done
          fence_frags(frag[(tap + kSets - 1) % kSets]);
          if constexpr (!kResidentB) {
            if (prev_b >= 0 && releases) Barrier::arrive(&b_empty[prev_b]);
            prev_b = b_slot;
            if (++b_slot == kBStages) {
              b_slot = 0;
              b_phase ^= 1;
            }
          }
        }
        cute::warpgroup_wait<0>();
        fence_frags(frag[8 % kSets]);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int i = 0; i < kAcc; ++i) cute::warpgroup_fence_operand(acc[mt][i]);
        if (releases) {
          if constexpr (!kResidentB) Barrier::arrive(&b_empty[prev_b]);
          Barrier::arrive(&a_empty[a_slot]);
        }
        if (++a_slot == 2) {
          a_slot = 0;
          a_phase ^= 1;
        }
      }
    };

    float acc[kMT][kAcc];
    int e_phase = 0;
    for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
      mainloop(acc);
      Barrier::wait(e_full, e_phase);
      e_phase ^= 1;
      epilogue_smem(acc, n0_of(job));
      cutlass::arch::fence_view_async_shared();  // the TMA store reads what these threads wrote
      Barrier::arrive(e_ready);
    }
    allow_dependent_grid();
#endif
  }
};

template <class Conv>
__global__ void __launch_bounds__(384, 1) halo_conv_kernel(const __grid_constant__ Params p) {
  extern __shared__ char smem[];
  Conv::run(p, smem);
}

// A 4-d float16 tensor map, 128-byte swizzle: dims innermost first, byte strides of dims 1-3.
// A dimension of extent 1 is never stepped over: its stride is replaced by an aligned one
// (the TMA wants every stride a multiple of 16 bytes).
inline bool encode_4d(CUtensorMap* map, const void* ptr, const int64_t (&dims)[4], const int64_t (&strides)[3],
                      const uint32_t (&box)[4]) {
  cuuint64_t d[4], s[3];
  cuuint32_t b[4];
  for (int i = 0; i < 4; ++i) {
    d[i] = cuuint64_t(dims[i]);
    b[i] = box[i];
  }
  int64_t extent = dims[0] * 2;
  for (int i = 0; i < 3; ++i) {
    const int64_t step = dims[i + 1] == 1 ? (extent + 15) / 16 * 16 : strides[i];
    s[i] = cuuint64_t(step);
    extent = step * dims[i + 1];
  }
  return encode_f16_sw128<4>(map, ptr, d, s, b);
}

// 0, or the failing step * 1000 + detail (1: the problem's shape, 2: tensor maps, 3: shared
// memory attribute, 4: launch), as launch_conv_cutlass
template <class Conv>
int launch(const ConvCutlassProblem& p, cudaStream_t stream) {
  const int bad = Conv::check(p);
  if (bad != 0) return 1000 + bad;
  const int64_t out_h = p.h + 2 * p.padding - 2, out_w = p.w + 2 * p.padding - 2;
  Params params{};
  const int64_t c = p.c, k = p.k;
  if (!encode_4d(&params.tma_a, p.x, {c, p.w, p.h, p.n}, {c * 2, p.w * c * 2, int64_t(p.h) * p.w * c * 2},
                 {64, Conv::kW, Conv::kW, 1}))
    return 2001;
  // the weights [K, 3, 3, C] as (9C, K), box (64, 64)
  if (!encode_f16_sw128<2>(&params.tma_b, p.weight, {cuuint64_t(9) * p.c, cuuint64_t(p.k)},
                           {cuuint64_t(9) * p.c * 2}, {64, cuuint32_t(Conv::kNB)}))
    return 2002;
  const uint32_t pixel_box[4] = {64, Conv::kS, Conv::kS, 1};
  const int64_t* os = p.out_strides;  // {n, h, w} in elements
  if (!encode_4d(&params.tma_out, p.out, {k, out_w, out_h, p.n}, {os[2] * 2, os[1] * 2, os[0] * 2}, pixel_box))
    return 2003;
  if (p.residual != nullptr) {
    const int64_t* rs = p.residual_strides;
    if (!encode_4d(&params.tma_res, p.residual, {k, out_w, out_h, p.n}, {rs[2] * 2, rs[1] * 2, rs[0] * 2},
                   pixel_box))
      return 2004;
  }
  params.bias = static_cast<const __half*>(p.bias);
  params.has_residual = p.residual != nullptr;
  params.c = p.c;
  params.padding = p.padding;
  params.n_blocks = p.k / Conv::kNB;
  params.tiles_x = int((out_w + Conv::kS - 1) / Conv::kS);
  params.tiles_per_image = params.tiles_x * int((out_h + Conv::kS - 1) / Conv::kS);
  const int64_t jobs = int64_t(p.n) * params.tiles_per_image * params.n_blocks;
  if (jobs <= 0 || jobs > (int64_t(1) << 30)) return 1002;
  params.jobs = int(jobs);
  if (cudaFuncSetAttribute(halo_conv_kernel<Conv>, cudaFuncAttributeMaxDynamicSharedMemorySize, Conv::kSmem) !=
      cudaSuccess)
    return 3000;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(params.jobs < p.sm_count ? params.jobs : p.sm_count));
  config.blockDim = dim3(Conv::kThreads);
  config.dynamicSmemBytes = Conv::kSmem;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = programmatic_launch_enabled() ? 1 : 0;
  if (cudaLaunchKernelEx(&config, halo_conv_kernel<Conv>, params) != cudaSuccess) return 4000;
  return 0;
}

}  // namespace halo

// conv_into_'s configuration `name` (configs.h) as the halo-tile kernel Conv
#define SEGBLOCKS_DEFINE_HALO_CONV(name, ...)                                                    \
  int launch_conv_cutlass_##name(const ConvCutlassProblem& p, cudaStream_t stream) {             \
    return halo::launch<__VA_ARGS__>(p, stream);                                                 \
  }                                                                                              \
  size_t workspace_conv_cutlass_##name(const ConvCutlassProblem&) { return 0; }

}  // namespace cuda
}  // namespace segblocks
