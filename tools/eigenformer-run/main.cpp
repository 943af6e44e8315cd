// eigenformer-run: runs one layer on a conformance case and writes its outputs.
//
//   eigenformer-run CASE.safetensors OUT.safetensors
//   eigenformer-run --list
//
// All the logic is in include/eigenformer/conformance/ (run_cli), which the tests call in-process;
// the case format is documented in docs/conformance.md.
#include <eigenformer/conformance/runner.hpp>

#include <iostream>

int main(int argc, char** argv) {
  return eigenformer::conformance::run_cli(argc, argv, std::cout, std::cerr);
}
