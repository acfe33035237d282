// Runs a unit of xenstore work in a transaction and retries it when the
// commit reports a conflict (EAGAIN), the way every xenstore client must.
// The retry count is bounded so a livelock (another writer touching the same
// nodes in a loop) surfaces as an error instead of hanging the control thread.
#pragma once

#include <cerrno>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "xenstore/XenStore.hpp"

namespace xbb::xs {

inline constexpr int kDefaultTransactionAttempts = 16;

// Calls fn(TxId) inside a fresh transaction and commits. On a conflict (the
// commit returns false, or an operation inside fn throws Error with EAGAIN)
// the transaction is restarted: fn must therefore re-read everything it
// depends on and have no side effects outside xenstore. If fn throws anything
// else, the transaction is aborted and the exception propagates. After
// `max_attempts` conflicts, throws Error(EAGAIN). Returns fn's result.
template <class F>
auto with_transaction(XenStore& xs, F fn, int max_attempts = kDefaultTransactionAttempts)
    -> std::invoke_result_t<F&, TxId> {
  using Result = std::invoke_result_t<F&, TxId>;
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    const TxId tx = xs.transaction_start();
    try {
      if constexpr (std::is_void_v<Result>) {
        fn(tx);
        if (xs.transaction_end(tx, true)) return;
      } else {
        Result result = fn(tx);
        if (xs.transaction_end(tx, true)) return result;
      }
    } catch (const Error& e) {
      try {
        xs.transaction_end(tx, false);
      } catch (...) {
        // The abort is best effort: the original error is the useful one.
      }
      if (e.code().value() != EAGAIN) throw;
    } catch (...) {
      try {
        xs.transaction_end(tx, false);
      } catch (...) {
      }
      throw;
    }
  }
  throw Error(EAGAIN, "xenstore transaction still conflicting after " +
                          std::to_string(max_attempts) + " attempts");
}

}  // namespace xbb::xs
