// One configuration of the halo-tile convolution (see configs.inc).
#include "halo_conv.cuh"

namespace halo_probe {
int halo_conv_s8_u2_n64_te_pf(const Problem& p, cudaStream_t stream) {
  return run<HaloConv<8, 2, 64, 6, false, true, true, 0>>(p, stream);
}
}  // namespace halo_probe
