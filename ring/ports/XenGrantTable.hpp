// ports::GrantTable over libxengnttab (/dev/xen/gntdev): the production
// adapter. One handle per worker thread.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "ring/ports/GuestMemory.hpp"

// libxengnttab's handle, kept out of this header (its headers lack extern "C").
struct xengntdev_handle;

namespace xbb::ports {

class XenGrantTable final : public GrantTable {
 public:
  // Enough for one ring of the largest order (16 pages), a full set of
  // persistent grants (Linux keeps up to 1056 per ring) and the in-flight
  // maps of a ring's worth of indirect requests, with room to spare.
  static constexpr uint32_t kDefaultMaxGrants = 4096;

  // Opens /dev/xen/gntdev and sizes it for `max_grants` mapped pages.
  // Throws std::system_error (with errno) when there is no usable Xen.
  static std::unique_ptr<XenGrantTable> open(uint32_t max_grants = kDefaultMaxGrants);
  ~XenGrantTable() override;
  XenGrantTable(const XenGrantTable&) = delete;
  XenGrantTable& operator=(const XenGrantTable&) = delete;

  void* map(DomId domid, std::span<const GrantRef> refs, bool writable) override;
  int unmap(void* address, size_t pages) override;
  int copy(std::span<GrantCopySegment> segments) override;
  size_t mapped_pages() const override { return mapped_pages_; }

 private:
  explicit XenGrantTable(xengntdev_handle* handle);
  struct CopyBatch;

  xengntdev_handle* handle_;
  std::unordered_map<void*, size_t> mappings_;  // address -> pages, to catch bad unmaps
  size_t mapped_pages_ = 0;
  // Reused across copy() calls so the hot path does not allocate.
  std::unique_ptr<CopyBatch> batch_;
};

}  // namespace xbb::ports
