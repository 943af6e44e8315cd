#pragma once
// Runs a fuzz target's LLVMFuzzerTestOneInput over files and directories (the corpus and the crash
// files found and fixed), without libFuzzer. Used by replay_main.cpp (the CTest `fuzz_replay_*`
// binaries) and by replay_test.cpp (a target replayed inside an existing test binary).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fuzz_replay {

/// Feeds every regular file of `paths` (a directory: its files, in sorted order) to the target.
/// Returns the number of inputs, or -1 after naming a path that does not exist on stderr.
inline long replay(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  long files = 0;
  auto run = [&files](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++files;
  };
  for (const std::string& s : paths) {
    const fs::path p(s);
    if (fs::is_directory(p)) {
      std::vector<fs::path> entries;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) entries.push_back(e.path());
      std::sort(entries.begin(), entries.end());
      for (const auto& e : entries) run(e);
    } else if (fs::is_regular_file(p)) {
      run(p);
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", s.c_str());
      return -1;
    }
  }
  return files;
}

}  // namespace fuzz_replay
