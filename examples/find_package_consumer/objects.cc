// Puts and gets an object through an installed halo: halo::init() starts an embedded cluster
// from the installed halo-gcs and halo-node (found next to libhalo.so, in <prefix>/bin).
#include <cstdio>
#include <numeric>
#include <vector>

#include "halo/halo.h"

int main() {
  try {
    halo::init({.num_nodes = 2, .object_store_memory = 64ull << 20});
    std::vector<double> samples(1 << 16);
    std::iota(samples.begin(), samples.end(), 1.0);
    auto ref = halo::put(samples, {.ha = true});
    auto view = halo::get(ref);
    const double sum = std::accumulate(view.begin(), view.end(), 0.0);
    std::printf("put and got %zu values (HA, 2 copies), sum %.0f\n", view.size(), sum);
    halo::shutdown();
    return sum == 65536.0 * 65537.0 / 2 ? 0 : 1;
  } catch (const halo::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
