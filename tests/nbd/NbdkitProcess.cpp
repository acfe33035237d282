#include "tests/nbd/NbdkitProcess.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace xbb::storage::test {

std::string find_nbdkit() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(start, end - start) + "/nbdkit";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

NbdkitProcess::NbdkitProcess(std::string socket, std::vector<std::string> args) : socket_(std::move(socket)) {
  const std::string binary = find_nbdkit();
  if (binary.empty()) throw std::runtime_error("nbdkit is not installed");
  ::unlink(socket_.c_str());  // a previous (killed) server leaves its socket behind
  // nbdkit writes the pid file once it accepts connections: waiting for it
  // needs no probe connection (which nbdkit would log as a failed handshake).
  const std::string pidfile = socket_ + ".pid";
  ::unlink(pidfile.c_str());
  std::vector<std::string> argv_text = {binary, "--foreground", "--exit-with-parent", "--pidfile", pidfile, "--unix", socket_};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::access(pidfile.c_str(), F_OK) != 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("nbdkit exited before listening (status " + std::to_string(status) + ")");
    }
    if (std::chrono::steady_clock::now() > give_up) {
      kill();
      throw std::runtime_error("nbdkit did not listen on " + socket_ + " within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

NbdkitProcess::~NbdkitProcess() { kill(); }

void NbdkitProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

SocketDir::SocketDir() {
  char pattern[] = "/tmp/xbb-nbd-XXXXXX";
  if (!::mkdtemp(pattern)) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = pattern;
}

SocketDir::~SocketDir() {
  if (DIR* dir = ::opendir(path_.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(path_.c_str());
}

}  // namespace xbb::storage::test
