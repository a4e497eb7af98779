// Argument checks of the fused segmentation head ops (upsample_argmax*), shared by the CPU
// kernels and the CUDA launchers. Messages name the op and the argument.
#pragma once

#include <ATen/ATen.h>

#include "ops/block_checks.h"

namespace segblocks {

inline void check_head_sizes(const char* op, int64_t channels, int64_t factor) {
  TORCH_CHECK(factor >= 1, op, ": factor must be >= 1, got ", factor);
  TORCH_CHECK(channels >= 1 && channels <= 256, op,
              ": labels are uint8, so the logits need 1 to 256 channels, got ", channels);
}

// Block logits (highres, lowres) with their layout; returns the grid.
inline BlockGrid check_upsample_argmax_args(const char* op, const at::Tensor& highres,
                                            const at::Tensor& lowres, const at::Tensor& hr_pos,
                                            const at::Tensor& lr_pos, const at::Tensor& block_map,
                                            int64_t factor) {
  BlockGrid g = check_block_pair(op, "highres", highres, "lowres", lowres, hr_pos, lr_pos, 0);
  check_block_map(op, block_map, highres);
  check_block_map_shape(op, block_map, g);
  check_head_sizes(op, g.channels, factor);
  return g;
}

inline void check_upsample_argmax_dense_args(const char* op, const at::Tensor& logits, int64_t factor) {
  check_feature_tensor(op, "logits", logits);
  check_head_sizes(op, logits.size(1), factor);
}

}  // namespace segblocks
