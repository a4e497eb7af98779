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

// Padded units (block_pad_units with padding 1) with their layout; returns the grid.
inline BlockGrid check_upsample_argmax_units_args(const char* op, const at::Tensor& units,
                                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                  const at::Tensor& block_map, int64_t factor) {
  check_feature_tensor(op, "units_padded", units);
  check_positions(op, "hr_pos", hr_pos, units);
  check_positions(op, "lr_pos", lr_pos, units);
  TORCH_CHECK(units.size(2) == units.size(3) && units.size(3) >= 3, op,
              ": units_padded must be square tiles with a 1-px halo (side >= 3), got shape ", units.sizes());
  TORCH_CHECK(units.size(0) == 4 * hr_pos.size(0) + lr_pos.size(0), op, ": units_padded has ",
              units.size(0), " tiles but hr_pos and lr_pos give 4 * ", hr_pos.size(0), " + ",
              lr_pos.size(0));
  BlockGrid g{};
  g.hr_side = 2 * (units.size(3) - 2);
  g.channels = units.size(1);
  g.num_highres = hr_pos.size(0);
  g.num_lowres = lr_pos.size(0);
  check_block_map(op, block_map, units);
  check_block_map_shape(op, block_map, g);
  check_head_sizes(op, g.channels, factor);
  return g;
}

inline void check_upsample_argmax_dense_args(const char* op, const at::Tensor& logits, int64_t factor) {
  check_feature_tensor(op, "logits", logits);
  check_head_sizes(op, logits.size(1), factor);
}

}  // namespace segblocks
