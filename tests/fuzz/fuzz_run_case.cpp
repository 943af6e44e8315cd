// Fuzz target: eigenformer-run's case loading and running (conformance/runner.hpp) on untrusted
// safetensors bytes. Every input must run or be rejected with an eigenformer::Error; a rejection
// that blames the library itself (Problem::internal) is a bug and aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <eigenformer/conformance/builtin.hpp>
#include <eigenformer/conformance/runner.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace eigenformer;
  using namespace eigenformer::conformance;
  try {
    const SafeTensors st = SafeTensors::from_bytes(std::vector<std::uint8_t>(data, data + size));
    (void)run_case(st).to_bytes();
  } catch (const CaseError& e) {
    if (e.problem() == Problem::internal) {
      std::fprintf(stderr, "internal error on a fuzzed case: %s\n", e.what());
      std::abort();
    }
  } catch (const Error&) {
  }
  return 0;
}
