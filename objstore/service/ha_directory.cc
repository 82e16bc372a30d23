#include "objstore/service/ha_directory.h"

#include <algorithm>
#include <cstddef>
#include <set>
#include <utility>

namespace halo::objstore {

std::vector<HaCandidate> order_for_copies(std::vector<HaCandidate> candidates,
                                          const std::string& own_failure_domain, size_t start) {
  if (!candidates.empty()) {
    std::rotate(candidates.begin(),
                candidates.begin() + static_cast<std::ptrdiff_t>(start % candidates.size()),
                candidates.end());
  }
  std::set<std::string> used;
  if (!own_failure_domain.empty()) used.insert(own_failure_domain);
  std::vector<HaCandidate> first;
  std::vector<HaCandidate> rest;
  for (HaCandidate& candidate : candidates) {
    const std::string& domain = candidate.failure_domain;
    if (domain.empty() || used.insert(domain).second) {
      first.push_back(std::move(candidate));
    } else {
      rest.push_back(std::move(candidate));
    }
  }
  for (HaCandidate& candidate : rest) first.push_back(std::move(candidate));
  return first;
}

}  // namespace halo::objstore
