// The checks every storage kind applies in submit() before queueing, so a
// request that can never succeed is refused the same way everywhere:
//   -EROFS       write, discard or secure discard on a read-only storage
//   -EOPNOTSUPP  discard / secure discard the storage did not advertise
//   -EINVAL      anything malformed: no or too many iovecs, zero bytes or (Read/
//                Write) more than INT32_MAX bytes, offset or length not a multiple of the logical block
//                size, a range past the end of the storage (out-of-range is an
//                -EINVAL at submit rather than a failed completion: it is the
//                caller's bug or a hostile guest, and the engine validates
//                ranges before submitting anyway), and, when `buffer_alignment`
//                is non-zero (O_DIRECT), iovec addresses or lengths that are
//                not multiples of it.
#pragma once

#include <cstdint>

#include "storage/Storage.hpp"

namespace xbb::storage {

struct ValidatedRequest {
  uint64_t bytes = 0;  // Read/Write: sum of the iovecs; Discard: length; Flush: 0
};

// Returns 0 and fills `out`, or a negative errno as described above.
int validate_request(const IoRequest& request, const Properties& properties,
                     uint32_t buffer_alignment, ValidatedRequest& out);

}  // namespace xbb::storage
