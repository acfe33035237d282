// Runs fuzz targets without libFuzzer (gcc builds): every file of the given
// corpus directories, then a fixed number of pseudo-random inputs from a
// fixed seed, so the run is the same every time.
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
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
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
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("replayed %zu corpus files and %lu random inputs\n", files, random_runs);
  return files == 0 ? 1 : 0;  // an empty corpus means a broken test setup
}
