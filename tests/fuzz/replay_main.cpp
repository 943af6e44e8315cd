// The CTest `fuzz_replay_<name>` binaries: replays the files and directories given as arguments
// through the fuzz target linked in (replay.hpp). Exit 0 when at least one input ran.
#include <cstdio>
#include <string>
#include <vector>

#include "replay.hpp"

int main(int argc, char** argv) {
  const long files = fuzz_replay::replay(std::vector<std::string>(argv + 1, argv + argc));
  if (files < 0) return 2;
  std::printf("replayed %ld inputs\n", files);
  return files > 0 ? 0 : 1;
}
