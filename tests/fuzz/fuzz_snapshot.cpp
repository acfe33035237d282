// Fuzz target for what snapshots read back from disk: the store header
// (decode_snapshot_header), a whole store file (SnapshotStore::open: header,
// cluster map, copies; then reads, Snapshot's bitmap and a write that must
// leave a store open() accepts again), and the snapshot catalog
// (SnapshotCatalog::load, then saving and reloading it).
//
// Store files are built from the input in a memfd: either raw bytes or a
// header made from fuzzed fields (valid layouts, off-by-a-bit layouts and
// overflowing ones), a map whose entries point at real copies, at nothing or
// anywhere, a file of any size up to a few MiB, and a checksum that is usually
// made right so the checks behind it are reached.
//
// Invariants (abort on violation): nothing is read outside a buffer (ASan);
// every corrupt input is refused with a StorageError (no other exception, no
// crash); an accepted header describes a layout that really covers the origin
// (clusters x cluster size >= origin size, the map inside the header's end and
// the data, data cluster-aligned); an accepted store's bitmap is exactly its
// non-zero map entries, each of which reads back, while an uncopied cluster
// reads as -EIO; a copy written to an accepted store survives a reopen; the
// catalog refuses what it cannot read with a message, and what it accepts or
// records survives saving and loading again.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/engine/SnapshotCatalog.hpp"
#include "storage/Storage.hpp"
#include "storage/snapshot/Snapshot.hpp"
#include "storage/snapshot/SnapshotStore.hpp"
#include "storage/snapshot/SnapshotStoreFormat.hpp"
#include "tests/fuzz/FuzzSupport.hpp"

namespace {

using namespace xbb;
using storage::SnapshotHeader;

#define CHECK(cond, message) XBB_FUZZ_CHECK("fuzz_snapshot", cond, message)

constexpr size_t kHeader = SnapshotHeader::kHeaderSize;
constexpr uint64_t kMaxFile = 4u << 20;  // bigger stores only cost time
constexpr size_t kChecksumAt = kHeader - 8;

uint64_t fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

void fix_checksum(std::vector<uint8_t>& header) {
  const uint64_t sum = htole64(fnv1a(header.data(), kChecksumAt));
  std::memcpy(header.data() + kChecksumAt, &sum, 8);
}

// What an accepted header must mean, whatever produced it.
void check_accepted_header(const SnapshotHeader& h) {
  CHECK(std::has_single_bit(h.cluster_size) && h.cluster_size >= storage::kMinSnapshotCluster &&
            h.cluster_size <= storage::kMaxSnapshotCluster,
        "accepted cluster size " + std::to_string(h.cluster_size));
  CHECK(h.origin_size != 0 && h.origin_size % 512 == 0, "accepted origin size " + std::to_string(h.origin_size));
  // The clusters cover the origin exactly: none missing, none spare.
  const unsigned __int128 covered = (unsigned __int128)h.cluster_count * h.cluster_size;
  CHECK(covered >= h.origin_size && covered - h.origin_size < h.cluster_size,
        std::to_string(h.cluster_count) + " clusters of " + std::to_string(h.cluster_size) +
            " bytes accepted for an origin of " + std::to_string(h.origin_size) + " bytes");
  CHECK(h.map_offset >= kHeader, "the map overlaps the header");
  const unsigned __int128 map_end = (unsigned __int128)h.map_offset + (unsigned __int128)h.cluster_count * 8;
  CHECK(map_end <= h.data_offset, "the data overlaps the map");
  CHECK(h.data_offset % h.cluster_size == 0, "copies would not be cluster-aligned");
  CHECK(h.created_nsec < 1'000'000'000u, "accepted nanoseconds " + std::to_string(h.created_nsec));
  CHECK(h.origin_identity.size() <= SnapshotHeader::kMaxIdentity && h.invalid_reason.size() <= SnapshotHeader::kMaxReason,
        "text fields longer than their space");
}

// A header from fuzzed fields: mostly a real layout, sometimes each field
// off, sometimes sizes where the arithmetic overflows.
std::vector<uint8_t> structured_header(fuzz::Input& in) {
  SnapshotHeader h;
  const uint8_t knobs = in.u8();
  h.cluster_size = (knobs & 1) ? in.u32() : 1u << (in.u8() % 32);
  switch (in.u8() % 6) {
    case 0: h.origin_size = uint64_t(in.u16()) * 512; break;
    case 1: h.origin_size = uint64_t(in.u8() + 1) * h.cluster_size - 512 * (in.u8() % 4); break;
    case 2: h.origin_size = UINT64_MAX - 511 - uint64_t(in.u16()) * 512; break;
    case 3: h.origin_size = uint64_t(1) << (9 + in.u8() % 55); break;
    case 4: h.origin_size = in.u64(); break;
    default: h.origin_size = 512; break;
  }
  const uint32_t cs = h.cluster_size ? h.cluster_size : 1;
  const SnapshotHeader layout = SnapshotHeader::for_origin(h.origin_size, cs, "");
  h.cluster_count = (knobs & 2) ? in.u64() : layout.cluster_count + ((knobs & 4) ? int8_t(in.u8()) : 0);
  h.map_offset = (knobs & 8) ? in.u64() : layout.map_offset;
  h.data_offset = (knobs & 16) ? in.u64() : layout.data_offset;
  h.state = (knobs & 32) ? SnapshotHeader::State(in.u32() % 4) : SnapshotHeader::State::Valid;
  h.created_sec = int64_t(in.u64());
  h.created_nsec = (knobs & 64) ? in.u32() : in.u32() % 1'000'000'000u;
  for (auto& b : h.uuid) b = in.u8();
  h.origin_identity = in.bytes(40);
  h.invalid_reason = in.bytes(20);
  std::vector<uint8_t> raw(kHeader);
  storage::encode_snapshot_header(h, std::span<uint8_t, kHeader>(raw.data(), kHeader));
  return raw;
}

class Scratch {
 public:
  Scratch() {
    fd_ = ::memfd_create("fuzz-snapshot-store", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
    const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    dir_ = base + "/xbb-fuzz-snapshot-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  ~Scratch() {
    ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  int fd() const { return fd_; }
  const std::string& store_path() const { return path_; }
  std::string catalog_path() const { return dir_ + "/snapshots.json"; }

 private:
  int fd_;
  std::string path_;
  std::string dir_;
};

Scratch* scratch = nullptr;

void write_at(const void* data, size_t size, uint64_t offset) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(scratch->fd(), p, size, off_t(offset));
    if (n <= 0) std::abort();
    p += n;
    size -= size_t(n);
    offset += uint64_t(n);
  }
}

std::unique_ptr<storage::SnapshotStore> open_store(const char* when) {
  try {
    return storage::SnapshotStore::open(scratch->store_path());
  } catch (const storage::StorageError&) {
    return nullptr;  // refused, as a corrupt store must be
  } catch (const std::exception& e) {
    CHECK(false, std::string("SnapshotStore::open ") + when + " threw something other than StorageError: " + e.what());
  }
  return nullptr;
}

void fuzz_store(fuzz::Input& in) {
  const uint8_t flags = in.u8();
  std::vector<uint8_t> header;
  if (flags & 1) {
    header = structured_header(in);
  } else {
    header.assign(kHeader, 0);
    const std::string raw = in.bytes(255);
    std::copy(raw.begin(), raw.end(), header.begin());
    std::memcpy(header.data(), "XBBSNAP\0\1\0\0\0\0\x10\0\0", (flags & 8) ? 16 : 0);
  }
  // A few bytes flipped anywhere, before or after the checksum is made right.
  for (unsigned n = (flags >> 4) % 4; n > 0; --n) header[in.u16() % kHeader] = in.u8();
  if (!(flags & 2)) fix_checksum(header);

  SnapshotHeader decoded;
  const std::string why = storage::decode_snapshot_header(std::span<const uint8_t, kHeader>(header.data(), kHeader), decoded);
  if (why.empty()) {
    check_accepted_header(decoded);
    // What was accepted survives encoding and decoding again. (Not byte for
    // byte: bytes after a text field's NUL are not part of the header.)
    std::vector<uint8_t> again(kHeader);
    storage::encode_snapshot_header(decoded, std::span<uint8_t, kHeader>(again.data(), kHeader));
    SnapshotHeader twice;
    CHECK(storage::decode_snapshot_header(std::span<const uint8_t, kHeader>(again.data(), kHeader), twice).empty(),
          "an accepted header, encoded again, is refused");
    CHECK(twice.cluster_size == decoded.cluster_size && twice.state == decoded.state &&
              twice.origin_size == decoded.origin_size && twice.cluster_count == decoded.cluster_count &&
              twice.map_offset == decoded.map_offset && twice.data_offset == decoded.data_offset &&
              twice.created_sec == decoded.created_sec && twice.created_nsec == decoded.created_nsec &&
              twice.uuid == decoded.uuid && twice.origin_identity == decoded.origin_identity &&
              twice.invalid_reason == decoded.invalid_reason,
          "an accepted header changes when encoded and decoded again");
  }

  // The store file: header, map entries, copies, some size.
  CHECK(::ftruncate(scratch->fd(), 0) == 0, "ftruncate");
  write_at(header.data(), header.size(), 0);
  const uint64_t cs = why.empty() ? decoded.cluster_size : 4096;
  const uint64_t data_offset = why.empty() ? decoded.data_offset : 8192;
  const uint64_t clusters = why.empty() ? decoded.cluster_count : 0;
  const uint64_t map_offset = why.empty() ? decoded.map_offset : kHeader;
  const unsigned copies = in.u8() % 8;
  for (unsigned n = in.u8() % 16; n > 0; --n) {
    const uint64_t cluster = clusters ? in.u16() % clusters : in.u16();
    uint64_t entry;
    switch (in.u8() % 5) {
      case 0: entry = 0; break;
      case 1: case 2: entry = data_offset + (in.u8() % (copies + 1)) * cs; break;
      case 3: entry = data_offset + (in.u8() % (copies + 1)) * cs + in.u16(); break;
      default: entry = in.u64(); break;
    }
    const uint64_t at = map_offset + cluster * 8;
    if (at < kMaxFile) {
      const uint64_t le = htole64(entry);
      write_at(&le, 8, at);
    }
  }
  uint64_t size = data_offset + copies * cs;
  if (flags & 4) size = std::min<uint64_t>(size, in.u32() % (size + 1));  // truncated
  size = std::min(size, kMaxFile);
  struct stat st {};
  ::fstat(scratch->fd(), &st);
  if (size > uint64_t(st.st_size)) CHECK(::ftruncate(scratch->fd(), off_t(size)) == 0, "ftruncate");
  if (copies && size > data_offset) {
    const std::string fill = in.bytes(64);
    if (!fill.empty()) write_at(fill.data(), std::min<uint64_t>(fill.size(), size - data_offset), data_offset);
  }

  auto store = open_store("on a fuzzed store");
  if (!store) return;
  CHECK(why.empty(), "open() accepted a store whose header decode_snapshot_header refused: " + why);
  const auto h = store->header();  // a copy: the store is closed and opened again below
  check_accepted_header(h);
  ::fstat(scratch->fd(), &st);
  const uint64_t file_size = uint64_t(st.st_size);
  CHECK(file_size >= h.data_offset, "accepted a store shorter than its map");

  // The bitmap is the non-zero map entries, and each of those reads.
  auto bitmap = store->take_copied_bitmap();
  CHECK(bitmap.size() == (h.cluster_count + 63) / 64, "a bitmap of the wrong size");
  uint64_t set = 0;
  for (auto w : bitmap) set += std::popcount(w);
  CHECK(set == store->copied_at_open(), "the copied count disagrees with the bitmap");
  std::vector<uint8_t> buf(std::min<uint64_t>(h.cluster_size, 8192));
  const uint64_t look = std::min<uint64_t>(h.cluster_count, 4096);
  for (uint64_t c = 0; c < look; ++c) {
    uint64_t entry = 0;
    CHECK(::pread(scratch->fd(), &entry, 8, off_t(h.map_offset + c * 8)) == 8, "cannot read back the map");
    const bool copied = (bitmap[c / 64] >> (c % 64)) & 1;
    CHECK(copied == (entry != 0), "cluster " + std::to_string(c) + ": bitmap and map disagree");
    const uint64_t tail = h.cluster_size - buf.size();
    const int rc = store->read_copied(c, tail, buf.data(), buf.size());
    if (copied) {
      CHECK(rc == 0, "a copied cluster does not read: " + std::to_string(rc));
    } else {
      CHECK(rc == -EIO, "an uncopied cluster reads as " + std::to_string(rc));
    }
  }
  CHECK(store->read_copied(h.cluster_count, 0, buf.data(), 1) == -EINVAL, "a read past the last cluster");

  // Our own write into an accepted store leaves a store open() accepts, with
  // the copy in it. (Large clusters would only make the memfd big.)
  uint64_t victim = UINT64_MAX;
  for (uint64_t c = 0; c < look && victim == UINT64_MAX; ++c)
    if (!((bitmap[c / 64] >> (c % 64)) & 1)) victim = c;
  store.reset();
  auto fresh = open_store("a second time");
  CHECK(fresh != nullptr, "a store opened once does not open again");
  storage::Snapshot snapshot(std::move(fresh), scratch->store_path());
  for (uint64_t c = 0; c < look; ++c) {
    const bool copied = (bitmap[c / 64] >> (c % 64)) & 1;
    CHECK(snapshot.needs_copy(c * h.cluster_size, 512) == !copied, "needs_copy disagrees with the map");
  }
  CHECK(!snapshot.needs_copy(h.origin_size, 512), "needs a copy past the origin's end");
  if (victim == UINT64_MAX || h.cluster_size > (1u << 20) || file_size + h.cluster_size > 2 * kMaxFile) return;
  std::vector<uint8_t> data(h.cluster_size, uint8_t(in.u8() | 1));
  uint64_t at = 0;
  auto& live = snapshot.store();
  CHECK(live.write_cluster(victim, data.data(), data.size(), at) == 0, "write_cluster failed");
  CHECK(live.write_map_entry(victim, at) == 0 && live.sync() == 0, "write_map_entry failed");
  auto reopened = open_store("after our own write");
  CHECK(reopened != nullptr, "a store no longer opens after a copy was written into it");
  std::vector<uint8_t> back(data.size());
  CHECK(reopened->read_copied(victim, 0, back.data(), back.size()) == 0 && back == data,
        "the copy written does not read back");
  CHECK(reopened->copied_at_open() == set + 1, "the reopened store counts the wrong number of copies");
}

// The catalog: any bytes as the file, then the same file saved and loaded.
void fuzz_catalog(fuzz::Input& in) {
  const std::string path = scratch->catalog_path();
  const uint8_t flags = in.u8();
  const std::string origin = in.bytes(24), store = in.bytes(24);
  const std::string text(reinterpret_cast<const char*>(in.rest()), in.rest_size());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  backend::SnapshotCatalog catalog(path);
  std::optional<std::string> error;
  try {
    error = catalog.load();
  } catch (const std::exception& e) {
    CHECK(false, std::string("SnapshotCatalog::load threw: ") + e.what());
  }
  if (error) {
    CHECK(!error->empty(), "a refusal without a message");
    return;
  }
  // What was accepted: every origin key with its stores, as loaded.
  std::map<std::string, std::vector<std::string>> accepted;
  try {
    const auto j = nlohmann::json::parse(text);
    for (const auto& [o, stores] : j.at("origins").items()) accepted[o] = catalog.stores_of(o);
  } catch (const std::exception&) {
    CHECK(text.find_first_not_of(" \t\r\n") == std::string::npos, "load() accepted what a JSON parser refuses");
  }
  std::optional<std::string> saved;
  try {
    saved = (flags & 1) ? catalog.remove(origin, store) : catalog.add(origin, store);
  } catch (const std::exception& e) {
    CHECK(false, std::string("SnapshotCatalog::") + ((flags & 1) ? "remove" : "add") + " threw: " + e.what());
  }
  if (saved) return;  // could not record it: said so
  backend::SnapshotCatalog again(path);
  const auto reload = again.load();
  CHECK(!reload, "the catalog just saved does not load: " + reload.value_or(""));
  for (const auto& [o, stores] : accepted) {
    if (o == origin) continue;
    CHECK(again.stores_of(o) == stores, "the stores of an origin changed across a save");
  }
  const auto mine = again.stores_of(origin);
  const bool present = std::find(mine.begin(), mine.end(), store) != mine.end();
  CHECK(present == !(flags & 1), (flags & 1) ? "a removed store is still there" : "an added store is missing");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  scratch = new Scratch();
  std::atexit([] { delete scratch; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  if (in.u8() % 4 == 0) {
    fuzz_catalog(in);
  } else {
    fuzz_store(in);
  }
  return 0;
}
