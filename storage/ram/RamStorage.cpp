#include "storage/ram/RamStorage.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "storage/OpenError.hpp"
#include "storage/ram/RamQueue.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {
namespace {

uint64_t page_size() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

uint64_t mapping_length(uint64_t size) { return (size + page_size() - 1) / page_size() * page_size(); }

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T"};
  unsigned unit = 0;
  while (unit + 1 < std::size(kUnits) && bytes % 1024 == 0 && bytes >= 1024) {
    bytes /= 1024;
    ++unit;
  }
  return fmt::format("{}{}", bytes, kUnits[unit]);
}

// An image to preload: its fd and size in bytes.
struct Image {
  UniqueFd fd;
  uint64_t size = 0;
};

Image open_image(const std::string& path) {
  Image image;
  image.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!image.fd) throw open_error("ram image", path, errno, false);
  struct stat st {};
  if (::fstat(image.fd.get(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
    throw StorageError(fmt::format("ram image: '{}' is {}, not a regular file or block device", path,
                                   describe_file_type(st.st_mode)));
  const off_t end = ::lseek(image.fd.get(), 0, SEEK_END);
  if (end < 0) throw StorageError(fmt::format("ram image: cannot size '{}': {}", path, std::strerror(errno)));
  image.size = static_cast<uint64_t>(end);
  return image;
}

// Copies [begin, end) of the image into memory; false on a read error.
bool copy_extent(int fd, unsigned char* memory, uint64_t begin, uint64_t end) {
  while (begin < end) {
    const ssize_t n = ::pread(fd, memory + begin, end - begin, static_cast<off_t>(begin));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;  // the image shrank: the rest stays zero
    begin += static_cast<uint64_t>(n);
  }
  return true;
}

// Copies only the image's data extents (SEEK_DATA/SEEK_HOLE), so holes cost
// no memory; filesystems without SEEK_DATA get a full copy.
void load_image(const Image& image, unsigned char* memory, const std::string& path) {
  const int fd = image.fd.get();
  uint64_t at = 0;
  while (at < image.size) {
    off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) return;  // only a hole remains
    off_t hole = data < 0 ? -1 : ::lseek(fd, data, SEEK_HOLE);
    if (data < 0 || hole < 0) {  // no SEEK_DATA support: copy the rest
      data = static_cast<off_t>(at);
      hole = static_cast<off_t>(image.size);
    }
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), image.size);
    if (!copy_extent(fd, memory, static_cast<uint64_t>(data), end))
      throw StorageError(fmt::format("ram image: error reading '{}': {}", path, std::strerror(errno)));
    at = end;
  }
}

}  // namespace

std::unique_ptr<RamStorage> RamStorage::create(uint64_t size_bytes, const std::string& image_path,
                                               const OpenOptions& options) {
  Image image;
  if (!image_path.empty()) {
    image = open_image(image_path);
    if (size_bytes == 0) {
      if (image.size == 0)
        throw StorageError(fmt::format("ram: image '{}' is empty; give the disk a size (ram:SIZE:IMAGE)", image_path));
      size_bytes = (image.size + 511) / 512 * 512;
    } else if (image.size > size_bytes) {
      throw StorageError(fmt::format("ram: image '{}' ({} bytes) is larger than the disk size {} ({} bytes)",
                                     image_path, image.size, format_size(size_bytes), size_bytes));
    }
  }
  if (size_bytes == 0) throw StorageError("ram: the size must not be zero");
  if (size_bytes % 512 != 0)
    throw StorageError(fmt::format("ram: size {} bytes is not a multiple of 512", size_bytes));

  void* memory = ::mmap(nullptr, mapping_length(size_bytes), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED)
    throw StorageError(fmt::format("ram: cannot reserve {} bytes of address space: {}", size_bytes,
                                   std::strerror(errno)));
  auto* bytes = static_cast<unsigned char*>(memory);
  Properties p;
  p.size_bytes = size_bytes;
  p.read_only = options.read_only;
  p.can_flush = false;
  p.can_discard = p.can_secure_discard = !options.read_only;
  p.discard_granularity = p.can_discard ? 4096 : 0;
  p.physical_block_size = 4096;
  std::unique_ptr<RamStorage> storage(new RamStorage(bytes, p, image_path));
  if (image.fd) load_image(image, bytes, image_path);  // ~RamStorage unmaps if this throws
  spdlog::debug("ram: created {}", storage->describe());
  return storage;
}

RamStorage::RamStorage(unsigned char* memory, Properties properties, std::string image_path)
    : memory_(memory), properties_(properties), image_path_(std::move(image_path)) {}

RamStorage::~RamStorage() { ::munmap(memory_, mapping_length(properties_.size_bytes)); }

std::string RamStorage::describe() const {
  std::string text = "ram:" + format_size(properties_.size_bytes);
  if (!image_path_.empty()) text += ":" + image_path_;
  return text;
}

std::unique_ptr<StorageQueue> RamStorage::open_queue(unsigned depth) {
  return std::make_unique<RamQueue>(memory_, properties_, depth);
}

}  // namespace xbb::storage
