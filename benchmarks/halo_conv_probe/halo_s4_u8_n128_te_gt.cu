// One configuration of the halo-tile convolution (see configs.inc).
#include "halo_conv.cuh"

namespace halo_probe {
int halo_conv_s4_u8_n128_te_gt(const Problem& p, cudaStream_t stream) {
  return run<HaloConv<4, 8, 128, 4, false, true, false, 3>>(p, stream);
}
}  // namespace halo_probe
