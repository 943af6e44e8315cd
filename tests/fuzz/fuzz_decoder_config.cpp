// Fuzz target: the Decoder's JSON configuration (model/decoder_config.hpp). Every input must parse or
// be rejected with an eigenformer::Error; a parsed configuration that is small enough to build is
// turned into a Decoder (its layers validate their own parts), given a state and run on two tokens.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <eigenformer/model/decoder.hpp>
#include <eigenformer/model/decoder_config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace eigenformer;
  try {
    const DecoderConfig c = decoder_config_from_json(std::string_view(reinterpret_cast<const char*>(data), size));
    // Bound the work: small models only (the parser itself has no size limit to test here).
    double weights = double(c.vocab_size) * double(c.hidden_size);
    for (const auto& b : c.layers) {
      const double heads = double(b.attention.num_attention_heads + b.mla.num_attention_heads +
                                  b.retention.num_heads + b.gated_retention.num_heads);
      const double widths = double(b.attention.head_dim + b.mla.kv_lora_rank + b.mla.qk_nope_head_dim +
                                   b.mla.qk_rope_head_dim + b.mla.v_head_dim + b.retention.value_dim + c.hidden_size);
      weights += double(c.hidden_size) * (double(b.mlp.intermediate_size) + heads * widths);
    }
    if (c.layers.size() > 8 || weights > 2e6) return 0;
    const Decoder d(c);
    DecoderState st = d.make_state(4);
    Workspace<float> ws;
    Matrix<float> logits(2, c.vocab_size);
    const std::int32_t ids[2] = {0, static_cast<std::int32_t>(c.vocab_size - 1)};
    d.forward(ids, 2, logits, st, ws);
  } catch (const Error&) {
  }
  return 0;
}
