// A 3x3 stride-1 convolution on BlockPad-ed units that reads each input pixel from global
// memory once per output tile, not nine times: the GPU probe of benchmarks/halo_conv_probe.py.
//
// Today's units convolution (ops.conv_into_, CUTLASS's implicit GEMM with TMA im2col) loads
// a box of input pixels per filter tap: every input pixel crosses L2 -> shared memory nine
// times. Here a job is U whole units (padded tiles [s+2, s+2] of one 64-channel chunk, one TMA
// box) and every tap reads its shifted window of them from shared memory:
//
//   out[t, y, x, n] = relu(sum_{r, s, c} P[t, y + r, x + s, c] * W[n, r, s, c] + bias[n]
//                          + residual[t, y, x, n])
//
// P: the padded tiles [T, s+2, s+2, C] (channels_last), W: [N, 3, 3, C] (channels_last).
//
// * A (the activations) goes to the tensor cores from registers: each consumer thread's
//   ldmatrix row address is its output pixel's tap-shifted pixel in the tile, so a shift is
//   an address, for any unit side. The tiles arrive by TMA with the 128-byte swizzle (one
//   pixel = one 128-byte row of 64 channels), which makes eight consecutive pixels'
//   ldmatrix rows conflict-free.
// * B (the weights) streams by TMA, one [NB, 64] slab per (tap, chunk), into a ring of
//   stages read by wgmma through 128-byte-swizzle K-major descriptors (or stays resident).
// * A producer warp group (a TMA thread; with kTmaEpilogue an epilogue thread; with kGather
//   the gathering warps), two consumer warp groups (each half of the job's rows, every tap:
//   m64nNBk16 wgmmas with A in registers, two taps in flight). Persistent CTAs.
// * The epilogue (bias, residual, ReLU, float16) from registers through strides, or with
//   kTmaEpilogue through shared memory by TMA; either way the output can be the next padded
//   tiles' interiors, as conv_into_ writes them.
//
// With kStride = 2 (layer 2's first convolution, whose input the executor BlockPads whole)
// a unit's outputs are (s/2)^2 and their taps at (2y + dy, 2x + dx); the same tiles, the same
// index.
//
// Measured against conv_into_ in benchmarks/PERFORMANCE.md (steps/80-89). The product's copy
// of the tiled form is csrc/ops/cuda/cutlass/conv_halo.cuh.
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
#include "ops/cuda/cutlass/halo_tile.cuh"  // ldmatrix, wgmma and tensor maps, shared with the product's kernel
#include "problem.h"

namespace halo_probe {

struct Params {
  CUtensorMap tma_a;  // the padded tiles: (C, s+2, s+2, T), box (64, s+2, s+2, U), 128B swizzle
  CUtensorMap tma_b;  // the weights: (9C, N), box (64, NB), 128B swizzle
  CUtensorMap tma_out, tma_res;  // out, residual: (N, s, s, T), box (64, s, s, U) (kTmaEpilogue)
  const __half* source;          // kGather: the source rows, the halo index, the mean rows' quads
  const int* index;
  const int* mean_rows;
  int unit_rows, zero_row;
  const __half* bias;
  const __half* residual;
  __half* out;
  int64_t os[3], rs[3];  // tile, y, x strides (elements) of out and residual
  int tiles, c, n, jobs, n_blocks;
};

using segblocks::cuda::halo::desc_b_sw128;
using segblocks::cuda::halo::encode_f16_sw128;
using segblocks::cuda::halo::ldmatrix_x4;
using segblocks::cuda::halo::smem_u32;
using segblocks::cuda::halo::wgmma_rs;

// kS unit side, kU units per job (kU * kS * kS = 128 or 256 output rows), kNB output channels
// per job (64 or 128), kBStages weight stages; kResidentB: the weights are one chunk and one
// N block (C = 64, N = kNB: SwiftNet's layer 1), loaded once per CTA into nine stages
// kTmaEpilogue: the epilogue through shared memory: a second producer thread loads the job's
// residual by TMA during its main loop, the consumers add bias and accumulators in place and
// that thread stores the result by TMA while they go on to the next job
// kPrefetchA: three A fragment sets, each tap's ldmatrix issued under the previous tap's wgmmas
// (not after the wait for them: at 44% tensor-pipe activity, ncu's top stall was the
// short scoreboard, the wgmmas waiting for their ldmatrix)
// kGather: the tiles are not read from padded tiles but gathered from the units' own pixels
// through segblocks_core.halo's index (source rows: the units' pixels, the 2x2 means, a zero
// row): two producer warps copy each halo pixel's 16-byte chunks with cp.async into the same
// swizzled layout the TMA writes; with mean_rows given they make the frames' 2x2 means
// themselves (the source's mean rows are not read). No BlockPad, no frame pass.
// kGather = 3 (kTmaInterior): the tiles' interiors are the units themselves (source rows
// t*s*s ..), so they come by TMA (one 2-d box of the job's units' rows); only the frame pixels
// (4s+4 a unit) are gathered by the two producer warps through the index, into slots after the
// interiors; the consumers' ldmatrix rows then take each tap's slot from a table made once per
// thread (interior or frame slot of its tap-shifted pixel) instead of a shift.
// kGather = 2 (kBulk): one producer warp issues a 128-byte bulk copy (the TMA engine, no
// registers, completing on the slot's barrier by bytes) per halo pixel and chunk; bulk copies
// cannot swizzle, so the slot's pixels are 144 bytes apart instead (eight consecutive pixels'
// 16-byte chunks then fall in distinct banks for ldmatrix); the means must be in the source.
// kStride 2: the stride-2 convolution of the padded tiles (pad 1): a unit's output is
// kS/2 x kS/2, each output pixel's taps at (2y + dy, 2x + dx) of the tile; the same index.
template <int kS, int kU, int kNB_, int kBStages, bool kResidentB = false, bool kTmaEpilogue = false,
          bool kPrefetchA = false, int kGather = 0, int kStride = 1>
struct HaloConv {
  static constexpr int kW = kS + 2;
  static constexpr bool kBulk = kGather == 2;
  static constexpr bool kTmaInterior = kGather == 3;
  static constexpr int kFrame = 4 * kS + 4;          // frame pixels of a unit (kTmaInterior)
  static constexpr int kInterior = kU * kS * kS;     // interior slots of a job (kTmaInterior)
  static constexpr int kUnits = kU;
  static constexpr int kNB = kNB_;
  static constexpr bool kTma = kTmaEpilogue;
  static constexpr int kSo = kS / kStride;  // output side of a unit
  static_assert(kStride == 1 || (kStride == 2 && kS % 2 == 0), "stride 1, or 2 on even sides");
  static constexpr int kM = kU * kSo * kSo;
  // kTmaInterior: the interiors' TMA boxes (at most 256 rows a box)
  static constexpr int kBoxRows = kInterior < 256 ? kInterior : 256;
  static_assert(kInterior % kBoxRows == 0, "whole boxes");
  static_assert(kM == 128 || kM == 256, "a job is 128 or 256 output rows");
  static_assert(!kResidentB || kBStages == 9, "resident weights: a stage per tap");
  static constexpr int kMT = kM / 128;  // m64 tiles per consumer warp group
  static constexpr int kAcc = kNB / 2;  // accumulators per thread per m64 tile
  static constexpr int kABytes = kTmaInterior ? (kInterior + kU * kFrame) * 128 : kU * kW * kW * (kBulk ? 144 : 128);
  static constexpr int kABuf = (kABytes + 1023) / 1024 * 1024;
  static constexpr int kBBytes = kNB * 128;
  static constexpr int kThreads = 384;
  static constexpr int kGatherThreads = 64;  // warps 2 and 3 of the producer group
  static constexpr int kPitch = kBulk ? 144 : 128;  // bytes from one halo pixel to the next in A
  static constexpr int kPixels = kTmaInterior ? kU * kFrame : kU * kW * kW;  // a job's gathered pixels
  static constexpr int kRowBytes = kGather == 1 || kTmaInterior ? (kPixels * 4 + 15) / 16 * 16 : 0;  // source rows
  // registers: the gather threads need more than TMA issuers
  static constexpr int kProducerRegs = kGather ? 56 : 40;
  static constexpr int kConsumerRegs = kGather ? 216 : 232;
  static constexpr int kEBytes = kTmaEpilogue ? kM * kNB * 2 : 0;  // kNB / 64 slabs [kM, 64]
  static constexpr int kBars = 4 + 2 * kBStages + 2;
  static constexpr int kSmem = 2 * kABuf + kBStages * kBBytes + kEBytes + kRowBytes + kBars * 8 + 1024;
  static_assert(kSmem <= 232448, "shared memory");
  using Op = typename segblocks::cuda::halo::WgmmaRS<kNB>::Op;

  // 0, or why not: 1 shapes
  static int check(const Problem& p) {
    if (p.side != kS || p.stride != kStride || p.c % 64 != 0 || p.n % kNB != 0 || p.tiles < 1) return 1;
    if (kResidentB && (p.c != 64 || p.n != kNB)) return 1;
    if ((kGather != 0) != (p.index != nullptr)) return 1;
    if (kBulk && p.mean_rows != nullptr) return 1;  // the means must be in the source
    if (kTmaInterior && p.unit_rows != int64_t(p.tiles) * kS * kS) return 1;  // tile t = unit t
    return 0;
  }

  // The gather threads (g = 0 .. kGatherThreads - 1): per job and 64-channel chunk, every halo
  // pixel's eight 16-byte chunks, eight threads a pixel (128 contiguous bytes of its source
  // row), into the A slot in the TMA's 128-byte swizzle; then, their copies landed, one arrive
  // each (which also publishes the means they stored).
  // The job's index entries go to shared memory first, all loads in flight together (a
  // cp.async whose address waited on its own index load made the first version latency-bound:
  // steps/84), once per job for all its chunks.
  // kTmaInterior: a unit's frame pixel j (top row, bottom row, left column, right column) as
  // its position in the padded tile ((s+2)^2 entries of the index), and a padded-tile pixel
  // (py, px) of unit u as its slot in the A buffer
  __device__ __forceinline__ static int frame_entry(int j) {
    if (j < kW) return j;
    if (j < 2 * kW) return (kW - 1) * kW + (j - kW);
    if (j < 2 * kW + kS) return (1 + j - 2 * kW) * kW;
    return (1 + j - 2 * kW - kS) * kW + kW - 1;
  }
  __device__ __forceinline__ static int slot_of(int u, int py, int px) {
    if (py >= 1 && py <= kS && px >= 1 && px <= kS) return u * kS * kS + (py - 1) * kS + (px - 1);
    const int base = kInterior + u * kFrame;
    if (py == 0) return base + px;
    if (py == kW - 1) return base + kW + px;
    if (px == 0) return base + 2 * kW + (py - 1);
    return base + 2 * kW + kS + (py - 1);
  }

  __device__ static void gather(const Params& p, char* a_buf, int* rows, uint64_t* a_full, uint64_t* a_empty,
                                int chunks, int g) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Barrier = cutlass::arch::ClusterBarrier;
    int slot = 0, phase = 0;
    auto sync_gatherers = [] { asm volatile("bar.sync 1, %0;\n" ::"n"(kGatherThreads) : "memory"); };
    for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
      const int unit0 = (job / p.n_blocks) * kU;
      sync_gatherers();  // every copy of the last job issued (their addresses read rows)
#pragma unroll
      for (int pix = g; pix < kPixels; pix += kGatherThreads) {
        const int per_unit = kTmaInterior ? kFrame : kW * kW;
        const int tile = unit0 + pix / per_unit;
        const int entry = kTmaInterior ? frame_entry(pix % per_unit) : pix % per_unit;
        rows[pix] = tile < p.tiles ? __ldg(p.index + tile * (kW * kW) + entry) : p.zero_row;
      }
      sync_gatherers();
      for (int chunk = 0; chunk < chunks; ++chunk) {
        Barrier::wait(&a_empty[slot], phase ^ 1);
        const uint32_t dst = smem_u32(a_buf + slot * kABuf);
#pragma unroll 4
        for (int e = g; e < kPixels * 8; e += kGatherThreads) {
          const int pix = e >> 3, k16 = e & 7;
          const int row = rows[pix];
          const int slot = kTmaInterior ? kInterior + pix : pix;
          const uint32_t at = dst + slot * 128 + ((k16 ^ (slot & 7)) << 4);
          const int col = chunk * 64 + k16 * 8;
          if (p.mean_rows != nullptr && row >= p.unit_rows && row < p.zero_row) {
            const int* quad = p.mean_rows + 4 * (row - p.unit_rows);
            float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const uint4 v = __ldg(reinterpret_cast<const uint4*>(p.source + int64_t(__ldg(quad + q)) * p.c + col));
              const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                sum[2 * i] += __low2float(h[i]);
                sum[2 * i + 1] += __high2float(h[i]);
              }
            }
            uint4 m;
            __half2* mh = reinterpret_cast<__half2*>(&m);
#pragma unroll
            for (int i = 0; i < 4; ++i) mh[i] = __floats2half2_rn(0.25f * sum[2 * i], 0.25f * sum[2 * i + 1]);
            asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(at), "r"(m.x), "r"(m.y), "r"(m.z),
                         "r"(m.w)
                         : "memory");
          } else {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(at),
                         "l"(p.source + int64_t(row) * p.c + col)
                         : "memory");
          }
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        Barrier::arrive(&a_full[slot]);
        if (++slot == 2) {
          slot = 0;
          phase ^= 1;
        }
      }
    }
#endif
  }

  // kBulk's producer warp (lane 0 .. 31): each lane's halo pixels' source rows are loaded once
  // per job (all in flight), then per chunk lane 0 expects the slot's bytes and every lane
  // issues its pixels' 128-byte bulk copies.
  __device__ static void gather_bulk(const Params& p, char* a_buf, uint64_t* a_full, uint64_t* a_empty, int chunks,
                                     int lane) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Barrier = cutlass::arch::ClusterBarrier;
    using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
    constexpr int kPerLane = (kPixels + 31) / 32;
    int slot = 0, phase = 0;
    for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
      const int unit0 = (job / p.n_blocks) * kU;
      int rows[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int pix = lane + 32 * i;
        const int tile = unit0 + pix / (kW * kW);
        rows[i] = pix >= kPixels ? 0 : tile < p.tiles ? __ldg(p.index + tile * (kW * kW) + pix % (kW * kW)) : p.zero_row;
      }
      for (int chunk = 0; chunk < chunks; ++chunk) {
        Barrier::wait(&a_empty[slot], phase ^ 1);
        if (lane == 0) TxBarrier::arrive_and_expect_tx(&a_full[slot], kPixels * 128);
        __syncwarp();
        const uint32_t dst = smem_u32(a_buf + slot * kABuf);
        const uint32_t bar = smem_u32(&a_full[slot]);
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int pix = lane + 32 * i;
          if (pix < kPixels)
            asm volatile(
                "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 128, [%2];\n" ::"r"(
                    dst + pix * kPitch),
                "l"(p.source + int64_t(rows[i]) * p.c + chunk * 64), "r"(bar)
                : "memory");
        }
        if (++slot == 2) {
          slot = 0;
          phase ^= 1;
        }
      }
    }
#endif
  }

  __device__ static void run(const Params& p, char* raw) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Barrier = cutlass::arch::ClusterBarrier;
    using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
    char* smem = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
    char* a_buf = smem;
    char* b_buf = smem + 2 * kABuf;
    char* e_buf = b_buf + kBStages * kBBytes;
    int* rows = reinterpret_cast<int*>(e_buf + kEBytes);
    uint64_t* bars = reinterpret_cast<uint64_t*>(e_buf + kEBytes + kRowBytes);
    uint64_t* a_full = bars;
    uint64_t* a_empty = bars + 2;
    uint64_t* b_full = bars + 4;
    uint64_t* b_empty = bars + 4 + kBStages;
    uint64_t* e_full = bars + 4 + 2 * kBStages;  // the epilogue buffer holds the job's residual
    uint64_t* e_ready = e_full + 1;              // ... and then its output, to be stored
    const int warp_group = threadIdx.x / 128;
    const int chunks = p.c / 64;

    if (threadIdx.x == 0) {
      for (int i = 0; i < 2; ++i) {
        TxBarrier::init(&a_full[i], kGather == 1 ? kGatherThreads : kTmaInterior ? kGatherThreads + 1 : 1);
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

    if (warp_group == 0) {
      cutlass::arch::warpgroup_reg_dealloc<kProducerRegs>();
      constexpr uint64_t kHint = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
      if (kTmaEpilogue && threadIdx.x == 32) {
        // the epilogue's thread: the previous job's output out, then this job's residual in
        int phase = 0, prev_unit0 = -1, prev_n0 = 0;
        auto store = [&]() {
          Barrier::wait(e_ready, phase ^ 1);
          for (int sub = 0; sub < kNB / 64; ++sub)
            cute::SM90_TMA_STORE_4D::copy(&p.tma_out, e_buf + sub * kM * 128, prev_n0 + 64 * sub, 0, 0, prev_unit0);
          cute::tma_store_arrive();
          cute::tma_store_wait<0>();  // read: the buffer may be refilled
        };
        for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
          if (prev_unit0 >= 0) store();
          const int unit0 = (job / p.n_blocks) * kU;
          const int n0 = (job % p.n_blocks) * kNB;
          if (p.residual != nullptr) {
            TxBarrier::arrive_and_expect_tx(e_full, kEBytes);
            for (int sub = 0; sub < kNB / 64; ++sub)
              cute::SM90_TMA_LOAD_4D::copy(&p.tma_res, e_full, kHint, e_buf + sub * kM * 128, n0 + 64 * sub, 0, 0,
                                           unit0);
          } else {
            TxBarrier::arrive(e_full);
          }
          prev_unit0 = unit0;
          prev_n0 = n0;
          phase ^= 1;
        }
        if (prev_unit0 >= 0) store();
        asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
        return;
      }
      if ((kGather == 1 || kTmaInterior) && threadIdx.x >= 64) {
        gather(p, a_buf, rows, a_full, a_empty, chunks, threadIdx.x - 64);
        return;
      }
      if (kBulk && threadIdx.x >= 64) {
        if (threadIdx.x < 96) gather_bulk(p, a_buf, a_full, a_empty, chunks, threadIdx.x - 64);
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
        const int unit0 = (job / p.n_blocks) * kU;
        const int n0 = (job % p.n_blocks) * kNB;
        for (int chunk = 0; chunk < chunks; ++chunk) {
          if constexpr (kTmaInterior) {  // the interiors: the job's units' rows of the source
            Barrier::wait(&a_empty[a_slot], a_phase ^ 1);
            TxBarrier::arrive_and_expect_tx(&a_full[a_slot], kInterior * 128);
            for (int box = 0; box < kInterior / kBoxRows; ++box)
              cute::SM90_TMA_LOAD_2D::copy(&p.tma_a, &a_full[a_slot], kHint,
                                           a_buf + a_slot * kABuf + box * kBoxRows * 128, chunk * 64,
                                           unit0 * kS * kS + box * kBoxRows);
            if (++a_slot == 2) {
              a_slot = 0;
              a_phase ^= 1;
            }
          }
          if constexpr (!kGather) {
            Barrier::wait(&a_empty[a_slot], a_phase ^ 1);
            TxBarrier::arrive_and_expect_tx(&a_full[a_slot], kABytes);
            cute::SM90_TMA_LOAD_4D::copy(&p.tma_a, &a_full[a_slot], kHint, a_buf + a_slot * kABuf, chunk * 64, 0, 0,
                                         unit0);
            if (++a_slot == 2) {
              a_slot = 0;
              a_phase ^= 1;
            }
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

    cutlass::arch::warpgroup_reg_alloc<kConsumerRegs>();
    const int wg = warp_group - 1;           // this consumer group's half of the job's rows
    const int lane = threadIdx.x % 32;
    const int warp = (threadIdx.x / 32) % 4;  // within the group: rows 16 * warp of each m64 tile
    const bool releases = threadIdx.x % 128 == 0;
    int a_slot = 0, a_phase = 0, b_slot = 0, b_phase = 0;
    // this lane's ldmatrix row (output pixel) in each m64 tile, as a pixel of the job's tiles
    int pix[kMT];
    for (int mt = 0; mt < kMT; ++mt) {
      const int m = wg * (kM / 2) + mt * 64 + warp * 16 + (lane & 15);
      const int u = m / (kSo * kSo), y = (m / kSo) % kSo, x = m % kSo;
      pix[mt] = (u * kW + kStride * y) * kW + kStride * x;
    }
    const int khalf = lane >> 4;
    // kTmaInterior: each tap's slot of this lane's pixel in each m64 tile
    int tap_slot[kTmaInterior ? 9 : 1][kMT];
    if constexpr (kTmaInterior) {
#pragma unroll
      for (int tap = 0; tap < 9; ++tap)
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const int m = wg * (kM / 2) + mt * 64 + warp * 16 + (lane & 15);
          const int u = m / (kSo * kSo), y = (m / kSo) % kSo, x = m % kSo;
          tap_slot[tap][mt] = slot_of(u, kStride * y + tap / 3, kStride * x + tap % 3);
        }
    }
    if constexpr (kResidentB) TxBarrier::wait(&b_full[0], 0);

    // One quarter of a job's epilogue (m64 tile mt, rows + 8 h): rows warp * 16 + lane / 4
    // (+ 8 h), columns 8 j + 2 (lane % 4) (+ 1). The residual and bias values are loaded before
    // the first store: the compiler cannot know that out does not alias them, and a load after
    // a store would wait its own latency.
    auto epilogue_piece = [&](const float (&acc)[kMT][kAcc], int unit0, int n0, int piece) {
      // (rows past the last tile clamped, their stores predicated off)
      const int mt = piece / 2, h = piece % 2;
      const int m = wg * (kM / 2) + mt * 64 + warp * 16 + lane / 4 + 8 * h;
      const int tile_raw = unit0 + m / (kSo * kSo);
      const int valid = tile_raw < p.tiles;
      const int tile = valid ? tile_raw : p.tiles - 1;
      const int y = (m / kSo) % kSo, x = m % kSo;
      __half2 bv[kNB / 8], rv[kNB / 8];
#pragma unroll
      for (int j = 0; j < kNB / 8; ++j) {
        bv[j] = *reinterpret_cast<const __half2*>(p.bias + n0 + 8 * j + 2 * (lane % 4));
        rv[j] = __floats2half2_rn(0.f, 0.f);
      }
      if (p.residual != nullptr) {
        const __half* res = p.residual + tile * p.rs[0] + y * p.rs[1] + x * p.rs[2] + n0;
#pragma unroll
        for (int j = 0; j < kNB / 8; ++j) rv[j] = *reinterpret_cast<const __half2*>(res + 8 * j + 2 * (lane % 4));
      }
      __half* out = p.out + tile * p.os[0] + y * p.os[1] + x * p.os[2] + n0;
#pragma unroll
      for (int j = 0; j < kNB / 8; ++j) {
        const float v0 = acc[mt][4 * j + 2 * h] + __low2float(bv[j]) + __low2float(rv[j]);
        const float v1 = acc[mt][4 * j + 2 * h + 1] + __high2float(bv[j]) + __high2float(rv[j]);
        const __half2 o = __floats2half2_rn(fmaxf(v0, 0.f), fmaxf(v1, 0.f));
        asm volatile("{\n .reg .pred q;\n setp.ne.b32 q, %2, 0;\n @q st.global.b32 [%0], %1;\n}\n"
                     :: "l"(out + 8 * j + 2 * (lane % 4)), "r"(*reinterpret_cast<const uint32_t*>(&o)), "r"(valid)
                     : "memory");
      }
    };

    // The epilogue through shared memory (kTmaEpilogue): the residual is there (or nothing,
    // without one); each thread adds its accumulators and the bias in place (128-byte rows,
    // 16-byte chunks swizzled like the TMA's: conflict-free) for the epilogue thread to store.
    auto epilogue_smem = [&](const float (&acc)[kMT][kAcc], int n0) {
      __half2 bv[kNB / 8];
#pragma unroll
      for (int j = 0; j < kNB / 8; ++j) bv[j] = *reinterpret_cast<const __half2*>(p.bias + n0 + 8 * j + 2 * (lane % 4));
      const bool has_res = p.residual != nullptr;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int m = wg * (kM / 2) + mt * 64 + warp * 16 + lane / 4 + 8 * h;
#pragma unroll
          for (int j = 0; j < kNB / 8; ++j) {
            const int col = (8 * j) % 64;
            __half2* at = reinterpret_cast<__half2*>(e_buf + (8 * j / 64) * kM * 128 + m * 128 +
                                                     ((((col >> 3) ^ (m & 7))) << 4) + 4 * (lane % 4));
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
              const int q = kTmaInterior ? tap_slot[kTmaInterior ? tap : 0][mt] : pix[mt] + shift;
              if constexpr (kBulk)
                ldmatrix_x4(f[kk][mt], a_base + q * kPitch + (((kk << 1) | khalf) << 4));
              else
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
              wgmma_rs<Op>(frag[tap % kSets][kk][mt], desc_b_sw128(b_base + kk * 32), acc[mt],
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
    auto unit0_of = [&](int job) { return (job / p.n_blocks) * kU; };
    auto n0_of = [&](int job) { return (job % p.n_blocks) * kNB; };

    float acc[kMT][kAcc];
    int e_phase = 0;
    for (int job = blockIdx.x; job < p.jobs; job += gridDim.x) {
      mainloop(acc);
      if constexpr (kTmaEpilogue) {
        Barrier::wait(e_full, e_phase);
        e_phase ^= 1;
        epilogue_smem(acc, n0_of(job));
        cutlass::arch::fence_view_async_shared();  // the TMA store reads what these threads wrote
        Barrier::arrive(e_ready);
      } else {
#pragma unroll
        for (int piece = 0; piece < 2 * kMT; ++piece) epilogue_piece(acc, unit0_of(job), n0_of(job), piece);
      }
    }
#endif
  }
};

template <class Conv>
__global__ void __launch_bounds__(384, 1) halo_conv_kernel(const __grid_constant__ Params p) {
  extern __shared__ char smem[];
  Conv::run(p, smem);
}

// the tensor maps: the padded tiles (or, gathered with TMA interiors, the source's unit rows)
// and the weights, 128-byte swizzle all
inline int make_maps(const Problem& p, int units_per_job, int nb, Params& out, int interior_box_rows = 0) {
  const cuuint64_t w = cuuint64_t(p.side) + 2, c = cuuint64_t(p.c);
  if (interior_box_rows > 0 &&  // the source's unit rows (C, T*s*s), boxes (64, rows)
      !encode_f16_sw128<2>(&out.tma_a, p.source, {c, cuuint64_t(p.unit_rows)}, {c * 2},
                           {64, cuuint32_t(interior_box_rows)}))
    return 3;
  if (p.padded != nullptr &&  // (C, s+2, s+2, T), box (64, s+2, s+2, U)
      !encode_f16_sw128<4>(&out.tma_a, p.padded, {c, w, w, cuuint64_t(p.tiles)}, {c * 2, w * c * 2, w * w * c * 2},
                           {64, cuuint32_t(w), cuuint32_t(w), cuuint32_t(units_per_job)}))
    return 1;
  if (!encode_f16_sw128<2>(&out.tma_b, p.weight, {9 * c, cuuint64_t(p.n)}, {9 * c * 2}, {64, cuuint32_t(nb)}))
    return 2;
  return 0;
}

// a [T, N, so, so] pixel tensor (so = side / stride; channels contiguous; strides in elements)
// as (N, so, so, T), box (64, so, so, U), 128B swizzle: the TMA epilogue's residual and output
inline int make_pixel_map(CUtensorMap* map, const void* ptr, const int64_t* strides, const Problem& p,
                          int units_per_job) {
  const cuuint64_t so = cuuint64_t(p.side / p.stride);
  return encode_f16_sw128<4>(map, ptr, {cuuint64_t(p.n), so, so, cuuint64_t(p.tiles)},
                             {cuuint64_t(strides[2]) * 2, cuuint64_t(strides[1]) * 2, cuuint64_t(strides[0]) * 2},
                             {64, cuuint32_t(so), cuuint32_t(so), cuuint32_t(units_per_job)})
             ? 0
             : 1;
}

// 0, or the failing step * 1000 + detail (1: check, 2: tensor maps, 3: shared memory
// attribute, 4: launch)
template <class Conv>
int run(const Problem& p, cudaStream_t stream) {
  const int bad = Conv::check(p);
  if (bad != 0) return 1000 + bad;
  Params params{};
  const int maps = make_maps(p, Conv::kUnits, Conv::kNB, params, Conv::kTmaInterior ? Conv::kBoxRows : 0);
  if (maps != 0) return 2000 + maps;
  if (Conv::kTma) {
    if (make_pixel_map(&params.tma_out, p.out, p.out_strides, p, Conv::kUnits) != 0) return 2003;
    if (p.residual != nullptr && make_pixel_map(&params.tma_res, p.residual, p.res_strides, p, Conv::kUnits) != 0)
      return 2004;
  }
  params.source = static_cast<const __half*>(p.source);
  params.index = p.index;
  params.mean_rows = p.mean_rows;
  params.unit_rows = int(p.unit_rows);
  params.zero_row = int(p.zero_row);
  params.bias = static_cast<const __half*>(p.bias);
  params.residual = static_cast<const __half*>(p.residual);
  params.out = static_cast<__half*>(p.out);
  for (int i = 0; i < 3; ++i) {
    params.os[i] = p.out_strides[i];
    params.rs[i] = p.res_strides[i];
  }
  params.tiles = p.tiles;
  params.c = p.c;
  params.n = p.n;
  params.n_blocks = p.n / Conv::kNB;
  params.jobs = (p.tiles + Conv::kUnits - 1) / Conv::kUnits * params.n_blocks;
  if (cudaFuncSetAttribute(halo_conv_kernel<Conv>, cudaFuncAttributeMaxDynamicSharedMemorySize, Conv::kSmem) !=
      cudaSuccess)
    return 3000;
  const int grid = params.jobs < p.sm_count ? params.jobs : p.sm_count;
  halo_conv_kernel<Conv><<<grid, Conv::kThreads, Conv::kSmem, stream>>>(params);
  if (cudaGetLastError() != cudaSuccess) return 4000;
  return 0;
}

}  // namespace halo_probe
