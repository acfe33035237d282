// The "ram" kind: ram:SIZE, ram:SIZE:IMAGE, ram::IMAGE (syntax in Target.hpp).
#include <fmt/format.h>

#include "storage/KindTable.hpp"
#include "storage/OpenError.hpp"
#include "storage/SizeParser.hpp"
#include "storage/ram/RamStorage.hpp"

namespace xbb::storage {
namespace {

std::unique_ptr<Storage> open_ram(const std::string& argument, const OpenOptions& options) {
  const auto colon = argument.find(':');
  const std::string size_text = argument.substr(0, colon);
  const std::string image = colon == std::string::npos ? "" : argument.substr(colon + 1);
  if (colon != std::string::npos && image.empty())
    throw StorageError("ram: the image path after the second ':' is empty (ram:SIZE:IMAGE)");
  uint64_t size = 0;
  if (size_text.empty() || size_text == "auto") {
    if (image.empty())
      throw StorageError("ram: no size given (ram:SIZE, e.g. ram:64M, or ram:auto:IMAGE to size it to an image)");
  } else if (auto parsed = parse_size(size_text)) {
    size = *parsed;
    if (size == 0) throw StorageError("ram: the size must not be zero");
  } else {
    throw StorageError(fmt::format(
        "ram: size '{}' is not a size (use digits with an optional K, M, G or T suffix, e.g. ram:64M)", size_text));
  }
  return RamStorage::create(size, image, options);
}

}  // namespace

void add_ram_kinds(KindTable& table) { table.kinds["ram"] = open_ram; }

}  // namespace xbb::storage
