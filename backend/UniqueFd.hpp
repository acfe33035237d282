// One owner of a file descriptor for the whole project: storage/UniqueFd.hpp.
#pragma once

#include "storage/UniqueFd.hpp"

namespace xbb::backend {
using storage::UniqueFd;
}  // namespace xbb::backend
