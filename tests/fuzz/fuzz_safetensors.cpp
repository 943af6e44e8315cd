// Fuzz target: the safetensors reader on untrusted bytes. Every input must either parse or be
// rejected with an eigenformer::Error; a parsed file's tensors are all read back as float (the dtype
// conversions and bounds checks) and as int32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <eigenformer/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace eigenformer;
  try {
    const SafeTensors st = SafeTensors::from_bytes(std::vector<std::uint8_t>(data, data + size));
    for (const TensorInfo& t : st.tensors()) {
      if (t.numel() > (std::int64_t(1) << 22)) continue;  // bounded work per input
      try {
        (void)st.to_vector<float>(t.name);
        (void)st.to_vector<std::int32_t>(t.name);  // integer targets: range-checked per element
      } catch (const Error&) {  // a dtype that does not convert: rejected with an Error, the contract
      }
    }
    (void)st.metadata();
  } catch (const Error&) {
  }
  return 0;
}
