#include "storage/file/BlockSysfs.hpp"

#include <sys/sysmacros.h>

#include <cctype>
#include <fstream>

#include <fmt/format.h>

#include "storage/SizeParser.hpp"

namespace xbb::storage {
namespace {

std::optional<std::string> read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

}  // namespace

std::optional<std::string> read_block_attribute(dev_t device, const std::string& name) {
  const std::string dir = fmt::format("/sys/dev/block/{}:{}/", major(device), minor(device));
  if (auto value = read_first_line(dir + name)) return value;
  if (name.starts_with("queue/")) return read_first_line(dir + "../" + name);
  return std::nullopt;
}

std::optional<uint64_t> read_block_number(dev_t device, const std::string& name) {
  auto text = read_block_attribute(device, name);
  if (!text || text->empty() || !std::isdigit(static_cast<unsigned char>(text->back()))) return std::nullopt;
  return parse_size(*text);
}

}  // namespace xbb::storage
