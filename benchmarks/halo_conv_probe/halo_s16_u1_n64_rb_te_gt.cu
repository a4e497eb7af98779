// One configuration of the halo-tile convolution (see configs.inc).
#include "halo_conv.cuh"

namespace halo_probe {
int halo_conv_s16_u1_n64_rb_te_gt(const Problem& p, cudaStream_t stream) {
  return run<HaloConv<16, 1, 64, 9, true, true, false, 3>>(p, stream);
}
}  // namespace halo_probe
