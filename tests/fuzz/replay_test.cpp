// A fuzz target's corpus replayed as a GoogleTest case inside an existing test binary, for a target
// that instantiates what that binary already compiles (tests/fuzz/CMakeLists.txt): the target's
// source and this file are added to the binary, EIGENFORMER_FUZZ_REPLAY_NAME names the test and
// EIGENFORMER_FUZZ_REPLAY_PATHS lists the corpus paths ('|'-separated).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "replay.hpp"

TEST(FuzzReplay, EIGENFORMER_FUZZ_REPLAY_NAME) {
  std::vector<std::string> paths;
  const std::string all = EIGENFORMER_FUZZ_REPLAY_PATHS;
  for (std::size_t b = 0; b <= all.size();) {
    const std::size_t e = std::min(all.find('|', b), all.size());
    if (e > b) paths.push_back(all.substr(b, e - b));
    b = e + 1;
  }
  ASSERT_FALSE(paths.empty());
  const long files = fuzz_replay::replay(paths);
  EXPECT_GT(files, 0) << "corpus " << all << " is missing or empty";
  RecordProperty("inputs", static_cast<int>(files));
}
