// Helpers shared by the xenstore tests: waiting for watch events without
// timing assumptions, and a temporary directory for server sockets.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "xenstore/XenStore.hpp"

namespace xbb::xs::testing {

// Blocks until the watch fd is readable and returns the next event. The
// timeout only guards against a hung test; no test depends on its length.
inline std::optional<WatchEvent> wait_event(XenStore& xs, int guard_ms = 20000) {
  if (auto ev = xs.read_watch()) return ev;
  pollfd pfd{xs.watch_fd(), POLLIN, 0};
  while (::poll(&pfd, 1, guard_ms) > 0) {
    if (auto ev = xs.read_watch()) return ev;
  }
  return std::nullopt;
}

// Proves the absence of events deterministically: each sync() writes a
// marker node the watcher watches, and returns every event that arrived
// before the marker's event (events of one connection are delivered in order).
class EventSync {
 public:
  EventSync(XenStore& watcher, XenStore& writer, std::string marker = "/sync")
      : watcher_(watcher), writer_(writer), marker_(std::move(marker)) {
    writer_.write(kNoTransaction, marker_, "0");
    // Readable by every domain, so guest watchers see the marker too.
    writer_.set_permissions(kNoTransaction, marker_, {Permission{0, Permission::Access::Read}});
    watcher_.watch(marker_, kToken);
    registration_ = collect();
  }

  // Events that were queued before the sync watch registered (other than it).
  const std::vector<WatchEvent>& before_registration() const { return registration_; }

  std::vector<WatchEvent> sync() {
    writer_.write(kNoTransaction, marker_, std::to_string(++seq_));
    return collect();
  }

 private:
  static constexpr const char* kToken = "xbb-test-sync";

  std::vector<WatchEvent> collect() {
    std::vector<WatchEvent> out;
    while (true) {
      auto ev = wait_event(watcher_);
      if (!ev) {
        ADD_FAILURE() << "no sync event arrived";
        return out;
      }
      if (ev->token == kToken) return out;
      out.push_back(*ev);
    }
  }

  XenStore& watcher_;
  XenStore& writer_;
  std::string marker_;
  std::vector<WatchEvent> registration_;
  int seq_ = 0;
};

// A private directory under /tmp for unix sockets (short paths: sun_path is
// 108 bytes), removed with its socket at scope exit.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/xbb-xs.XXXXXX";
    if (::mkdtemp(tmpl)) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) {
      ::unlink((path_ + "/socket").c_str());
      ::rmdir(path_.c_str());
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string socket() const { return path_ + "/socket"; }

 private:
  std::string path_;
};

}  // namespace xbb::xs::testing
