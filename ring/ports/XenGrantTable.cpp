#include "ring/ports/XenGrantTable.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

extern "C" {
#include <xengnttab.h>
}

#include "ring/ports/XenError.hpp"

namespace xbb::ports {

struct XenGrantTable::CopyBatch {
  std::vector<xengnttab_grant_copy_segment_t> segments;
  std::vector<size_t> index;  // position of each issued segment in the caller's span
};

XenGrantTable::XenGrantTable(xengnttab_handle* handle)
    : handle_(handle), batch_(std::make_unique<CopyBatch>()) {}

std::unique_ptr<XenGrantTable> XenGrantTable::open(uint32_t max_grants) {
  xengnttab_handle* handle = xengnttab_open(nullptr, 0);
  if (!handle) throw xen_error(errno, "cannot open the Xen grant device (xengnttab_open)");
  // Recent kernels ignore the per-handle limit; older ones default to a small one.
  if (xengnttab_set_max_grants(handle, max_grants) != 0) {
    int error = errno;
    xengnttab_close(handle);
    throw xen_error(error, "xengnttab_set_max_grants(" + std::to_string(max_grants) + ")");
  }
  return std::unique_ptr<XenGrantTable>(new XenGrantTable(handle));
}

XenGrantTable::~XenGrantTable() {
  if (!mappings_.empty()) {
    spdlog::warn("xen gnttab: handle closed with {} pages still mapped; unmapping", mapped_pages_);
    for (auto& [address, pages] : mappings_) xengnttab_unmap(handle_, address, static_cast<uint32_t>(pages));
  }
  xengnttab_close(handle_);
}

void* XenGrantTable::map(DomId domid, std::span<const GrantRef> refs, bool writable) {
  if (refs.empty() || refs.size() > UINT32_MAX) {
    errno = EINVAL;
    return nullptr;
  }
  // libxengnttab takes a non-const array but only reads it.
  void* address = xengnttab_map_domain_grant_refs(handle_, static_cast<uint32_t>(refs.size()), domid,
                                                  const_cast<uint32_t*>(refs.data()),
                                                  writable ? PROT_READ | PROT_WRITE : PROT_READ);
  if (!address) {
    int error = errno;
    spdlog::debug("xen gnttab: map of {} refs from domain {} failed: {}", refs.size(), domid,
                  std::strerror(error));
    errno = error;
    return nullptr;
  }
  mappings_.emplace(address, refs.size());
  mapped_pages_ += refs.size();
  return address;
}

int XenGrantTable::unmap(void* address, size_t pages) {
  auto it = mappings_.find(address);
  if (it == mappings_.end() || it->second != pages) {
    spdlog::error("xen gnttab: unmap of {} pages at {} that this handle did not map", pages, address);
    return -EINVAL;
  }
  if (xengnttab_unmap(handle_, address, static_cast<uint32_t>(pages)) != 0) {
    int error = errno;
    spdlog::error("xen gnttab: unmap of {} pages at {} failed: {}", pages, address, std::strerror(error));
    return -error;
  }
  mapped_pages_ -= pages;
  mappings_.erase(it);
  return 0;
}

int XenGrantTable::copy(std::span<GrantCopySegment> segments) {
  std::vector<xengnttab_grant_copy_segment_t>& batch = batch_->segments;
  std::vector<size_t>& index = batch_->index;
  batch.clear();
  index.clear();
  for (size_t i = 0; i < segments.size(); ++i) {
    GrantCopySegment& s = segments[i];
    // gntdev rejects the whole ioctl for one segment that crosses its page;
    // fail just that segment instead, with the status Xen itself would give.
    if (size_t{s.offset} + s.length > kPageSize) {
      s.status = GNTST_bad_copy_arg;
      continue;
    }
    xengnttab_grant_copy_segment_t seg{};
    seg.len = s.length;
    if (s.direction == GrantCopySegment::Direction::FromGuest) {
      seg.flags = GNTCOPY_source_gref;
      seg.source.foreign.ref = s.ref;
      seg.source.foreign.offset = s.offset;
      seg.source.foreign.domid = s.domid;
      seg.dest.virt = s.local;
    } else {
      seg.flags = GNTCOPY_dest_gref;
      seg.source.virt = s.local;
      seg.dest.foreign.ref = s.ref;
      seg.dest.foreign.offset = s.offset;
      seg.dest.foreign.domid = s.domid;
    }
    batch.push_back(seg);
    index.push_back(i);
  }
  if (batch.empty()) return 0;
  if (xengnttab_grant_copy(handle_, static_cast<uint32_t>(batch.size()), batch.data()) != 0) {
    int error = errno;
    spdlog::error("xen gnttab: grant copy of {} segments failed: {}", batch.size(), std::strerror(error));
    return -error;
  }
  for (size_t k = 0; k < batch.size(); ++k) segments[index[k]].status = batch[k].status;
  return 0;
}

}  // namespace xbb::ports
