// Starting and reaping the supervisor's per-disk processes without blocking:
// each child comes with a pidfd that becomes readable when it exits, so the
// control loop polls it with everything else and reaps only what has ended.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

struct ChildProcess {
  pid_t pid = -1;
  storage::UniqueFd pidfd;  // readable once the process has exited
};

// Starts `executable` with `argv` (argv[0] included), the default signal
// mask and dispositions, and our environment without the variables named in
// `drop_env`, plus `add_env` ("NAME=value"). Throws std::system_error.
ChildProcess spawn_child(const std::string& executable, const std::vector<std::string>& argv,
                         const std::vector<std::string>& drop_env, const std::vector<std::string>& add_env);

// The wait status of `pid` if it has ended (reaping it), nothing while it runs.
std::optional<int> reap_child(pid_t pid);

// "exited with status 1", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

}  // namespace xbb::backend
