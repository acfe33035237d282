#include "tests/sim/guestmem/SimDomain.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

namespace xbb::sim {
namespace {

size_t file_size(int fd, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw std::invalid_argument(std::string("sim domain: cannot stat ") + what + ": " +
                                std::strerror(errno));
  return static_cast<size_t>(st.st_size);
}

// The hypervisor keeps the memory mapped for its whole life; a guest that
// could shrink the file afterwards would turn our accesses into SIGBUS.
void require_fixed_size(int fd, const char* what) {
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK))
    throw std::invalid_argument(std::string("sim domain: ") + what +
                                " must be a memfd sealed with F_SEAL_SHRINK");
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void drain(int eventfd) {
  uint64_t count;
  while (::read(eventfd, &count, sizeof count) > 0) {
  }
}

storage::UniqueFd duplicate(int fd) { return storage::UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); }

}  // namespace

std::shared_ptr<SimDomain> SimDomain::create(DomId id, storage::UniqueFd memory_fd, storage::UniqueFd grant_table_fd) {
  if (!memory_fd || !grant_table_fd)
    throw std::invalid_argument("sim domain: memory and grant table fds are required");
  require_fixed_size(memory_fd.get(), "guest memory");
  require_fixed_size(grant_table_fd.get(), "grant table");
  size_t memory_bytes = file_size(memory_fd.get(), "guest memory");
  size_t table_bytes = file_size(grant_table_fd.get(), "grant table");
  if (memory_bytes == 0 || memory_bytes % ports::kPageSize != 0 ||
      memory_bytes / ports::kPageSize > UINT32_MAX)
    throw std::invalid_argument("sim domain: guest memory size " + std::to_string(memory_bytes) +
                                " is not a whole number of pages");
  if (table_bytes == 0 || table_bytes % ports::kPageSize != 0 ||
      table_bytes / sizeof(grant_entry_v1_t) > UINT32_MAX)
    throw std::invalid_argument("sim domain: grant table size " + std::to_string(table_bytes) +
                                " is not a whole number of pages");
  MemoryMapping memory = MemoryMapping::map_shared(memory_fd.get(), memory_bytes);
  if (!memory)
    throw std::invalid_argument(std::string("sim domain: cannot map guest memory: ") +
                                std::strerror(errno));
  MemoryMapping table = MemoryMapping::map_shared(grant_table_fd.get(), table_bytes);
  if (!table)
    throw std::invalid_argument(std::string("sim domain: cannot map grant table: ") +
                                std::strerror(errno));
  auto pages = static_cast<uint32_t>(memory_bytes / ports::kPageSize);
  auto entries = static_cast<uint32_t>(table_bytes / sizeof(grant_entry_v1_t));
  return std::shared_ptr<SimDomain>(new SimDomain(id, std::move(memory_fd), std::move(grant_table_fd),
                                                  std::move(memory), std::move(table), pages,
                                                  entries));
}

SimDomain::SimDomain(DomId id, storage::UniqueFd memory_fd, storage::UniqueFd grant_table_fd, MemoryMapping memory,
                     MemoryMapping grant_table, uint32_t pages, uint32_t grant_entries)
    : id_(id),
      memory_fd_(std::move(memory_fd)),
      grant_table_fd_(std::move(grant_table_fd)),
      memory_(std::move(memory)),
      grant_table_(std::move(grant_table)),
      pages_(pages),
      grant_entries_(grant_entries),
      active_(grant_entries) {}

int16_t SimDomain::pin(GrantRef ref, DomId grantee, bool write, uint32_t* frame) {
  if (ref >= grant_entries_) return GNTST_bad_gntref;
  std::lock_guard lock(grant_mutex_);
  ActiveEntry& act = active_[ref];
  grant_entry_v1_t& e = entry(ref);
  const bool first_pin = act.readers + act.writers == 0;
  const auto want = static_cast<uint16_t>(GTF_reading | (write ? GTF_writing : 0));

  uint16_t flags = load_flags(e);
  for (;;) {
    if (first_pin && ((flags & GTF_type_mask) != GTF_permit_access || load_domid(e) != grantee))
      return GNTST_general_error;
    if (write && (flags & GTF_readonly)) return GNTST_general_error;
    if ((flags & want) == want || exchange_flags(e, flags, flags | want)) break;
  }

  if (first_pin) {
    // The entry cannot be revoked now that it is marked in use; read the
    // target again so a revoke-and-regrant between our checks is caught.
    uint16_t now = load_flags(e);
    uint32_t f = load_frame(e);
    if ((now & GTF_type_mask) != GTF_permit_access || load_domid(e) != grantee || f >= pages_ ||
        (write && (now & GTF_readonly))) {
      uint16_t cur = now;
      while (!exchange_flags(e, cur, static_cast<uint16_t>(cur & ~kGrantInUse))) {
      }
      return GNTST_general_error;
    }
    act.frame = f;
  }
  (write ? act.writers : act.readers)++;
  *frame = act.frame;
  return GNTST_okay;
}

void SimDomain::unpin(GrantRef ref, bool write) {
  if (ref >= grant_entries_) return;
  std::lock_guard lock(grant_mutex_);
  ActiveEntry& act = active_[ref];
  uint32_t& count = write ? act.writers : act.readers;
  if (count == 0) {
    spdlog::error("sim domain {}: unpin of grant {} that is not pinned", id_, ref);
    return;
  }
  --count;
  uint16_t clear = 0;
  if (act.writers == 0) clear |= GTF_writing;
  if (act.readers + act.writers == 0) clear |= GTF_reading;
  if (!clear) return;
  grant_entry_v1_t& e = entry(ref);
  uint16_t flags = load_flags(e);
  while (!exchange_flags(e, flags, static_cast<uint16_t>(flags & ~clear))) {
  }
}

int SimDomain::offer_port(EvtchnPort port, DomId remote, storage::UniqueFd to_remote, storage::UniqueFd from_remote) {
  if (!to_remote || !from_remote) return -EBADF;
  set_nonblocking(to_remote.get());
  set_nonblocking(from_remote.get());
  std::lock_guard lock(port_mutex_);
  if (ports_.contains(port)) return -EEXIST;
  ports_.emplace(port, OfferedPort{remote, std::move(to_remote), std::move(from_remote), 0});
  return 0;
}

int SimDomain::close_port(EvtchnPort port) {
  std::lock_guard lock(port_mutex_);
  return ports_.erase(port) ? 0 : -ENOENT;
}

std::optional<SimDomain::BoundPort> SimDomain::bind_port(EvtchnPort port, DomId binder, int* error) {
  if (!alive()) {
    *error = ESRCH;
    return std::nullopt;
  }
  std::lock_guard lock(port_mutex_);
  auto it = ports_.find(port);
  // Xen answers -EINVAL for every way a remote port can be unbindable.
  if (it == ports_.end() || it->second.remote != binder || it->second.bound_token != 0) {
    *error = EINVAL;
    return std::nullopt;
  }
  BoundPort bound{duplicate(it->second.to_remote.get()), duplicate(it->second.from_remote.get()),
                  next_token_++};
  if (!bound.incoming || !bound.outgoing) {
    *error = errno;
    return std::nullopt;
  }
  // Notifications sent while nobody was bound are dropped, as Xen drops them.
  drain(bound.incoming.get());
  it->second.bound_token = bound.token;
  return bound;
}

void SimDomain::release_port(EvtchnPort port, uint64_t token) {
  std::lock_guard lock(port_mutex_);
  auto it = ports_.find(port);
  if (it != ports_.end() && it->second.bound_token == token) it->second.bound_token = 0;
}

}  // namespace xbb::sim
