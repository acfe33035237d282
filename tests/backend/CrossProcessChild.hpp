// A child process started from a test (xbbd-sim, xbb_sim_guest, xbbctl):
// spawned with posix_spawn, so a multi-threaded test process may start it at
// any time (no code runs between fork and exec), killed and reaped on
// destruction whatever the test's outcome.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace xbb::backendtest {

class CrossProcessChild {
 public:
  enum class Stdout { Pipe, LogFile };
  // Starts argv[0] (a path). stderr goes to `log_path` (appended), or to the
  // test's own stderr when empty. stdout goes to a pipe read by read_line()
  // and read_all(), or (Stdout::LogFile, for a chatty process nobody reads)
  // to the log too. Throws std::system_error when the process cannot start.
  explicit CrossProcessChild(const std::vector<std::string>& argv, const std::string& log_path = "",
                             Stdout out = Stdout::Pipe);
  ~CrossProcessChild();  // SIGKILL and reap if still running
  CrossProcessChild(const CrossProcessChild&) = delete;
  CrossProcessChild& operator=(const CrossProcessChild&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // The next line of its stdout (without the newline); nothing on EOF or
  // when none arrives within `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Everything it writes to stdout until EOF (or `timeout`).
  std::string read_all(std::chrono::milliseconds timeout);

  bool send(int signal);
  // Waits up to `timeout` for it to end; returns its wait status (see
  // waitpid(2)), or nothing while it still runs.
  std::optional<int> wait(std::chrono::milliseconds timeout);

 private:
  bool fill(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// Describes a wait status for assertion messages ("exit 0", "signal 9").
std::string describe_status(int status);

}  // namespace xbb::backendtest
