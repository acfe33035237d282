// Linked into every target of a ThreadSanitizer build (XBB_TSAN), and only
// there. spdlog's registry is a function-local static inside libspdlog.so,
// which is not instrumented: when a helper thread logged first, TSan saw the
// registry built on that thread but not the guard that publishes it, and
// reported the next thread's logging call as a race. Building it here, on
// the main thread before main() and before any thread exists, makes every
// later use happen after it in TSan's eyes too. (A suppression would also
// silence the report, but matching one starts an external symbolizer whose
// pipes count as the process's descriptors, which the leak tests count.)
#include <spdlog/spdlog.h>

namespace {

[[maybe_unused]] const auto* const early_registry = spdlog::default_logger_raw();

}  // namespace
