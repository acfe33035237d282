#include "tests/sim/guestmem/SimGuestMemory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace xbb::sim {
namespace {

std::system_error os_error(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

// A memfd of `size` bytes whose size can never change again.
storage::UniqueFd sealed_memfd(const char* name, size_t size) {
  storage::UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) throw os_error(std::string("memfd_create ") + name);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    throw os_error(std::string("ftruncate ") + name);
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    throw os_error(std::string("sealing ") + name);
  return fd;
}

size_t grant_table_bytes(uint32_t entries) {
  size_t bytes = size_t{entries} * sizeof(grant_entry_v1_t);
  return (bytes + ports::kPageSize - 1) / ports::kPageSize * ports::kPageSize;
}

}  // namespace

SimGuestMemory::SimGuestMemory(DomId domid, uint32_t pages, uint32_t grant_entries)
    : domid_(domid), pages_(pages), grant_entries_(grant_entries) {
  if (pages == 0) throw std::invalid_argument("SimGuestMemory: a domain needs at least one page");
  if (grant_entries <= kReservedGrantEntries)
    throw std::invalid_argument("SimGuestMemory: grant table must have more than " +
                                std::to_string(kReservedGrantEntries) + " entries");
  // The table file is page-rounded; the spare tail entries are usable too.
  grant_entries_ = static_cast<uint32_t>(grant_table_bytes(grant_entries) / sizeof(grant_entry_v1_t));

  size_t memory_bytes = size_t{pages} * ports::kPageSize;
  memory_fd_ = sealed_memfd("xbb-sim-guest-memory", memory_bytes);
  grant_table_fd_ = sealed_memfd("xbb-sim-grant-table", grant_table_bytes(grant_entries_));
  memory_ = MemoryMapping::map_shared(memory_fd_.get(), memory_bytes);
  if (!memory_) throw os_error("mmap guest memory");
  grant_table_ = MemoryMapping::map_shared(grant_table_fd_.get(), grant_table_bytes(grant_entries_));
  if (!grant_table_) throw os_error("mmap grant table");

  page_allocated_.assign(pages, false);
  free_page_list_.reserve(pages);
  for (uint32_t p = pages; p-- > 0;) free_page_list_.push_back(p);  // hand out low pages first
  free_refs_.reserve(grant_entries_ - kReservedGrantEntries);
  for (GrantRef r = grant_entries_; r-- > kReservedGrantEntries;) free_refs_.push_back(r);
}

SimGuestMemory::~SimGuestMemory() = default;

void* SimGuestMemory::page_address(uint32_t page) const {
  if (page >= pages_)
    throw std::out_of_range("SimGuestMemory: page " + std::to_string(page) + " of " +
                            std::to_string(pages_));
  return static_cast<uint8_t*>(memory_.get()) + size_t{page} * ports::kPageSize;
}

std::optional<uint32_t> SimGuestMemory::alloc_page() {
  std::lock_guard lock(mutex_);
  if (free_page_list_.empty()) return std::nullopt;
  uint32_t page = free_page_list_.back();
  free_page_list_.pop_back();
  page_allocated_[page] = true;
  return page;
}

void SimGuestMemory::free_page(uint32_t page) {
  std::lock_guard lock(mutex_);
  if (page >= pages_ || !page_allocated_[page])
    throw std::invalid_argument("SimGuestMemory: freeing page " + std::to_string(page) +
                                " that is not allocated");
  page_allocated_[page] = false;
  free_page_list_.push_back(page);
}

uint32_t SimGuestMemory::free_pages() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(free_page_list_.size());
}

grant_entry_v1_t* SimGuestMemory::entry(GrantRef ref) const {
  if (ref >= grant_entries_) return nullptr;
  return static_cast<grant_entry_v1_t*>(grant_table_.get()) + ref;
}

GrantRef SimGuestMemory::grant(uint32_t page, DomId to, bool readonly) {
  if (page >= pages_)
    throw std::out_of_range("SimGuestMemory: granting page " + std::to_string(page) + " of " +
                            std::to_string(pages_));
  GrantRef ref;
  {
    std::lock_guard lock(mutex_);
    if (free_refs_.empty()) throw std::runtime_error("SimGuestMemory: grant table full");
    ref = free_refs_.back();
    free_refs_.pop_back();
  }
  // As a guest kernel does: target first, then publish the flags.
  grant_entry_v1_t& e = *entry(ref);
  store_target(e, to, page);
  store_flags(e, static_cast<uint16_t>(GTF_permit_access | (readonly ? GTF_readonly : 0)));
  return ref;
}

bool SimGuestMemory::revoke(GrantRef ref) {
  grant_entry_v1_t* e = entry(ref);
  if (!e || ref < kReservedGrantEntries) return false;
  uint16_t flags = load_flags(*e);
  do {
    if ((flags & GTF_type_mask) != GTF_permit_access) return false;
    if (flags & kGrantInUse) return false;  // the grantee has it pinned
  } while (!exchange_flags(*e, flags, GTF_invalid));
  std::lock_guard lock(mutex_);
  free_refs_.push_back(ref);
  return true;
}

uint16_t SimGuestMemory::grant_flags(GrantRef ref) const {
  grant_entry_v1_t* e = entry(ref);
  return e ? load_flags(*e) : 0;
}

uint32_t SimGuestMemory::granted() const {
  std::lock_guard lock(mutex_);
  return grant_entries_ - kReservedGrantEntries - static_cast<uint32_t>(free_refs_.size());
}

}  // namespace xbb::sim
