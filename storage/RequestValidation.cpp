#include "storage/RequestValidation.hpp"

#include <climits>
#include <cerrno>

#include <spdlog/spdlog.h>

namespace xbb::storage {
namespace {

int reject(int error, const char* why, const IoRequest& request) {
  spdlog::debug("storage: rejecting request tag {} (op {}, offset {}): {}", request.tag,
                static_cast<int>(request.op), request.offset, why);
  return error;
}

int check_range(const IoRequest& request, uint64_t bytes, const Properties& p) {
  const uint64_t block = p.logical_block_size;
  if (bytes == 0) return reject(-EINVAL, "zero length", request);
  if (request.offset % block != 0 || bytes % block != 0)
    return reject(-EINVAL, "not aligned to the logical block size", request);
  if (request.offset > p.size_bytes || bytes > p.size_bytes - request.offset)
    return reject(-EINVAL, "past the end of the storage", request);
  return 0;
}

}  // namespace

int validate_request(const IoRequest& request, const Properties& p, uint32_t buffer_alignment,
                     ValidatedRequest& out) {
  out.bytes = 0;
  switch (request.op) {
    case IoOp::Flush:
      return 0;
    case IoOp::Read:
    case IoOp::Write: {
      if (request.op == IoOp::Write && p.read_only) return reject(-EROFS, "read-only", request);
      if (request.iov == nullptr || request.iovcnt == 0 || request.iovcnt > IOV_MAX)
        return reject(-EINVAL, "bad iovec count", request);
      uint64_t bytes = 0;
      for (unsigned i = 0; i < request.iovcnt; ++i) {
        const iovec& v = request.iov[i];
        if (v.iov_len == 0) return reject(-EINVAL, "empty iovec", request);
        if (buffer_alignment != 0 &&
            (reinterpret_cast<uintptr_t>(v.iov_base) % buffer_alignment != 0 ||
             v.iov_len % buffer_alignment != 0))
          return reject(-EINVAL, "buffer not aligned for direct I/O", request);
        bytes += v.iov_len;
        if (bytes > INT32_MAX) return reject(-EINVAL, "too many bytes in one request", request);
      }
      if (int err = check_range(request, bytes, p)) return err;
      out.bytes = bytes;
      return 0;
    }
    case IoOp::Discard:
    case IoOp::SecureDiscard: {
      if (p.read_only) return reject(-EROFS, "read-only", request);
      const bool supported = request.op == IoOp::Discard ? p.can_discard : p.can_secure_discard;
      if (!supported) return reject(-EOPNOTSUPP, "discard not supported", request);
      if (int err = check_range(request, request.length, p)) return err;
      out.bytes = request.length;
      return 0;
    }
  }
  return reject(-EINVAL, "unknown operation", request);
}

}  // namespace xbb::storage
