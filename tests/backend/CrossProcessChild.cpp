#include "tests/backend/CrossProcessChild.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

extern char** environ;

namespace xbb::backendtest {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

CrossProcessChild::CrossProcessChild(const std::vector<std::string>& argv, const std::string& log_path, Stdout out) {
  if (argv.empty()) throw std::invalid_argument("CrossProcessChild: empty command line");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!log_path.empty())
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (out == Stdout::LogFile && !log_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    pid_ = -1;
    throw std::system_error(rc, std::generic_category(), "posix_spawn " + argv[0]);
  }
  stdout_ = pipe_fds[0];
}

CrossProcessChild::~CrossProcessChild() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_ >= 0) ::close(stdout_);
}

bool CrossProcessChild::fill(milliseconds timeout) {
  if (eof_) return false;
  pollfd p{stdout_, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  char chunk[4096];
  const ssize_t got = ::read(stdout_, chunk, sizeof chunk);
  if (got <= 0) {
    eof_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<size_t>(got));
  return true;
}

std::optional<std::string> CrossProcessChild::read_line(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || (!fill(left) && eof_)) return std::nullopt;
  }
}

std::string CrossProcessChild::read_all(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!eof_) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    fill(left);
  }
  return std::exchange(buffer_, std::string());
}

bool CrossProcessChild::send(int signal) { return pid_ > 0 && ::kill(pid_, signal) == 0; }

std::optional<int> CrossProcessChild::wait(milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      return status;
    }
    if (done < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    // No pollable handle for a child's exit without pidfd; a short nap is
    // enough for a hang guard.
    std::this_thread::sleep_for(milliseconds(5));
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace xbb::backendtest
