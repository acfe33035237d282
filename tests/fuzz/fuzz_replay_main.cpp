// Runs fuzz targets without libFuzzer (gcc builds): every file of the given
// corpus directories, then a fixed number of pseudo-random inputs from a
// fixed seed, so the run is the same every time.
//
// With XBB_FUZZ_SAVE=FILE set, each input is written to FILE before it runs,
// so the one that aborted is left there to replay (pass FILE's directory).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

double slowest_ms = 0;

void run_one(const std::vector<uint8_t>& bytes) {
  static const char* save = std::getenv("XBB_FUZZ_SAVE");
  if (save) {
    std::ofstream out(save, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  const auto t0 = std::chrono::steady_clock::now();
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  slowest_ms = std::max(slowest_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  unsigned long random_runs = 20000;
  size_t files = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--runs=", 0) == 0) {
      random_runs = std::strtoul(arg.c_str() + 7, nullptr, 10);
      continue;
    }
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream f(entry.path(), std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      run_one(bytes);
      ++files;
    }
    if (ec) {
      std::fprintf(stderr, "cannot read corpus directory %s: %s\n", arg.c_str(), ec.message().c_str());
      return 2;
    }
  }

  std::mt19937_64 rng(0x5eedb1c0ffeeull);
  std::vector<uint8_t> input;
  for (unsigned long run = 0; run < random_runs; ++run) {
    // Mostly short inputs (header plus a slot or two), sometimes a page.
    const size_t len = (rng() % 8 == 0) ? rng() % 4096 : rng() % 320;
    input.resize(len);
    for (auto& b : input) b = static_cast<uint8_t>(rng());
    run_one(input);
  }
  std::printf("replayed %zu corpus files and %lu random inputs; the slowest took %.1f ms\n", files, random_runs,
              slowest_ms);
  return files == 0 ? 1 : 0;  // an empty corpus means a broken test setup
}
