// What the disk should hold, sector by sector, for checking every read the
// frontend gets back. Discarded sectors become unknown (a discard may or may
// not zero them), never wrong.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace xbb::backendtest {

class DiskModel {
 public:
  explicit DiskModel(uint64_t sectors) : data_(sectors * 512), known_(sectors, true) {}

  uint64_t sectors() const { return known_.size(); }
  // A new, zeroed disk of the same size, without allocating again.
  void reset() {
    std::fill(data_.begin(), data_.end(), std::byte{0});
    std::fill(known_.begin(), known_.end(), true);
  }
  void write(uint64_t sector, std::span<const std::byte> bytes) {
    std::memcpy(data_.data() + sector * 512, bytes.data(), bytes.size());
    for (uint64_t s = 0; s < bytes.size() / 512; ++s) known_[sector + s] = true;
  }
  void forget(uint64_t sector, uint64_t count) {
    for (uint64_t s = 0; s < count; ++s) known_[sector + s] = false;
  }
  // "" when `bytes` read at `sector` match; otherwise the first bad sector.
  std::string check(uint64_t sector, std::span<const std::byte> bytes) const {
    for (uint64_t s = 0; s < bytes.size() / 512; ++s) {
      if (!known_[sector + s]) continue;
      if (std::memcmp(data_.data() + (sector + s) * 512, bytes.data() + s * 512, 512) != 0)
        return "sector " + std::to_string(sector + s) + " differs from the model";
    }
    return "";
  }

 private:
  std::vector<std::byte> data_;
  std::vector<bool> known_;
};

}  // namespace xbb::backendtest
