#pragma once
// DecoderConfig from JSON (the library's strict parser, core/json.hpp). The format, with Hugging Face
// field names wherever a field has one:
//
//   {
//     "vocab_size": 512, "hidden_size": 256, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
//     "layers": [
//       {"mixer": "attention", "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
//        "rope_theta": 10000, "sliding_window": 0, "intermediate_size": 512, "hidden_act": "silu",
//        "repeat": 2},
//       {"mixer": "mla", "num_attention_heads": 8, "q_lora_rank": 0, "kv_lora_rank": 64,
//        "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32, "intermediate_size": 512},
//       {"mixer": "retention", "num_heads": 4, "value_dim": 512, "intermediate_size": 512},
//       {"mixer": "gated_retention", "num_heads": 4, "intermediate_size": 512}
//     ]
//   }
//
// Each layer object is one block (`repeat`: that many identical blocks, default 1). Keys per mixer:
//   all:             mixer (required), intermediate_size (required), hidden_act ("silu"), mlp_gated (true),
//                    repeat (1), ffn ("mlp" or "kan": a B-spline KANFFN with kan_grid_size (5) and
//                    kan_spline_order (3))
//   attention:       num_attention_heads (required), num_key_value_heads (= heads), head_dim
//                    (hidden / heads), rope_theta (10000), sliding_window (0 = none), dilated
//                    (LongNet branches [[segment_length, dilated_ratio], ...]; absent = dense)
//   mla:             num_attention_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim
//                    (required), q_lora_rank (0), rope_theta (10000)
//   retention:       num_heads (required), value_dim (= hidden), layernorm_eps (1e-6)
//   gated_retention: num_heads (required), rope_theta (10000), norm_eps (1e-5)
// Unknown keys, wrong types and out-of-range values are ErrorKind::config errors naming the layer
// index and the key.

#include <cmath>
#include <string>
#include <string_view>

#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/json.hpp"
#include "decoder.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {
namespace decoder_json {

struct Obj {
  const json::Value& v;
  std::string where;

  const json::Value* get(std::string_view key) const { return v.find(key); }
  bool has(std::string_view key) const { return get(key) != nullptr; }
  double number(std::string_view key, double def, bool required = false) const {
    const json::Value* x = get(key);
    if (!x) {
      check(!required, ErrorKind::config, where, "missing key '", key, "'");
      return def;
    }
    check(x->kind == json::Kind::number, ErrorKind::config, where, "'", key, "' must be a number, got ",
          json::kind_name(x->kind));
    return x->number;
  }
  Index integer(std::string_view key, Index def, bool required = false, Index min = 0) const {
    const json::Value* x = get(key);
    const double d = number(key, static_cast<double>(def), required);
    check(!x || x->is_integer_literal(), ErrorKind::config, where, "'", key, "' must be an integer, got ", x ? x->text : "");
    check(d >= static_cast<double>(min) && d < 9.0e15, ErrorKind::config, where, "'", key, "' = ", d,
          " must be >= ", min);
    return static_cast<Index>(d);
  }
  bool boolean(std::string_view key, bool def) const {
    const json::Value* x = get(key);
    if (!x) return def;
    check(x->kind == json::Kind::boolean, ErrorKind::config, where, "'", key, "' must be true or false");
    return x->boolean;
  }
  std::string string(std::string_view key, std::string def, bool required = false) const {
    const json::Value* x = get(key);
    if (!x) {
      check(!required, ErrorKind::config, where, "missing key '", key, "'");
      return def;
    }
    check(x->kind == json::Kind::string, ErrorKind::config, where, "'", key, "' must be a string");
    return x->text;
  }
  void only(std::initializer_list<std::string_view> allowed) const {
    for (const auto& m : v.members) {
      bool ok = false;
      for (auto a : allowed) ok = ok || m.first == a;
      check(ok, ErrorKind::config, where, "unknown key ", json::quote(m.first));
    }
  }
};

}  // namespace decoder_json
}  // namespace detail

/// Parses the JSON text of a DecoderConfig (format in the file comment).
inline DecoderConfig decoder_config_from_json(std::string_view text) {
  using detail::decoder_json::Obj;
  const json::Value root = json::parse(text, "DecoderConfig", ErrorKind::config, "the decoder configuration");
  check(root.kind == json::Kind::object, ErrorKind::config, "DecoderConfig", "the configuration must be an object");
  const Obj top{root, "DecoderConfig"};
  top.only({"vocab_size", "hidden_size", "rms_norm_eps", "tie_word_embeddings", "layers"});
  DecoderConfig c;
  c.vocab_size = top.integer("vocab_size", 0, true, 1);
  c.hidden_size = top.integer("hidden_size", 0, true, 1);
  c.rms_norm_eps = top.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = top.boolean("tie_word_embeddings", false);
  const json::Value* layers = top.get("layers");
  check(layers && layers->kind == json::Kind::array && !layers->items.empty(), ErrorKind::config, "DecoderConfig",
        "'layers' must be a non-empty array of block objects");
  for (std::size_t i = 0; i < layers->items.size(); ++i) {
    const json::Value& lv = layers->items[i];
    const std::string where = "DecoderConfig layers[" + std::to_string(i) + "]";
    check(lv.kind == json::Kind::object, ErrorKind::config, where, "must be an object");
    const Obj o{lv, where};
    DecoderBlockConfig b;
    const std::string kind = o.string("mixer", "", true);
    b.mlp.intermediate_size = o.integer("intermediate_size", 0, true, 1);
    b.mlp.act = parse_activation(o.string("hidden_act", "silu"), where);
    b.mlp.gated = o.boolean("mlp_gated", true);
    const Index repeat = o.integer("repeat", 1, false, 1);
    const std::string ffn = o.string("ffn", "mlp");
    check(ffn == "mlp" || ffn == "kan", ErrorKind::config, where, "unknown ffn ", json::quote(ffn), " (mlp or kan)");
    b.kan_ffn = ffn == "kan";
    const Index grid = o.integer("kan_grid_size", 5, false, 1), order = o.integer("kan_spline_order", 3, false, 0);
    check(grid <= 4096 && order <= 16, ErrorKind::config, where, "kan_grid_size = ", grid, " and kan_spline_order = ",
          order, " must be <= 4096 and <= 16");
    b.kan.bspline.grid_size = static_cast<int>(grid);
    b.kan.bspline.spline_order = static_cast<int>(order);
    if (kind == "attention") {
      o.only({"mixer", "intermediate_size", "hidden_act", "mlp_gated", "repeat", "ffn", "kan_grid_size", "kan_spline_order", "num_attention_heads",
              "num_key_value_heads", "head_dim", "rope_theta", "sliding_window", "dilated"});
      b.mixer = MixerKind::attention;
      AttentionConfig& a = b.attention;
      a.num_attention_heads = o.integer("num_attention_heads", 0, true, 1);
      a.num_key_value_heads = o.integer("num_key_value_heads", a.num_attention_heads, false, 1);
      a.head_dim = o.integer("head_dim", 0);
      a.rope.theta = o.number("rope_theta", 10000.0);
      a.sliding_window = o.integer("sliding_window", 0);
      if (const json::Value* dl = o.get("dilated")) {
        check(dl->kind == json::Kind::array && !dl->items.empty(), ErrorKind::config, where,
              "'dilated' must be a non-empty array of [segment_length, dilated_ratio] pairs");
        for (const json::Value& pair : dl->items) {
          check(pair.kind == json::Kind::array && pair.items.size() == 2 && pair.items[0].is_integer_literal() &&
                    pair.items[1].is_integer_literal() && pair.items[0].number >= 1 && pair.items[1].number >= 1 &&
                    pair.items[0].number < 1e9 && pair.items[1].number < 1e9,
                ErrorKind::config, where, "'dilated' entries must be [segment_length, dilated_ratio], positive integers");
          a.dilated.push_back({static_cast<Index>(pair.items[0].number), static_cast<Index>(pair.items[1].number)});
        }
      }
    } else if (kind == "mla") {
      o.only({"mixer", "intermediate_size", "hidden_act", "mlp_gated", "repeat", "ffn", "kan_grid_size", "kan_spline_order", "num_attention_heads",
              "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_theta"});
      b.mixer = MixerKind::mla;
      MLAConfig& m = b.mla;
      m.num_attention_heads = o.integer("num_attention_heads", 0, true, 1);
      m.q_lora_rank = o.integer("q_lora_rank", 0);
      m.kv_lora_rank = o.integer("kv_lora_rank", 0, true, 1);
      m.qk_nope_head_dim = o.integer("qk_nope_head_dim", 0, true, 1);
      m.qk_rope_head_dim = o.integer("qk_rope_head_dim", 0, true, 2);
      m.v_head_dim = o.integer("v_head_dim", 0, true, 1);
      m.rope.theta = o.number("rope_theta", 10000.0);
    } else if (kind == "retention") {
      o.only({"mixer", "intermediate_size", "hidden_act", "mlp_gated", "repeat", "ffn", "kan_grid_size", "kan_spline_order", "num_heads", "value_dim",
              "layernorm_eps"});
      b.mixer = MixerKind::retention;
      b.retention.num_heads = o.integer("num_heads", 0, true, 1);
      b.retention.value_dim = o.integer("value_dim", 0);
      b.retention.layernorm_eps = o.number("layernorm_eps", 1e-6);
    } else if (kind == "gated_retention") {
      o.only({"mixer", "intermediate_size", "hidden_act", "mlp_gated", "repeat", "ffn", "kan_grid_size", "kan_spline_order", "num_heads", "rope_theta",
              "norm_eps"});
      b.mixer = MixerKind::gated_retention;
      b.gated_retention.num_heads = o.integer("num_heads", 0, true, 1);
      b.gated_retention.rope_theta = o.number("rope_theta", 10000.0);
      b.gated_retention.norm_eps = o.number("norm_eps", 1e-5);
    } else {
      fail(ErrorKind::config, where, "unknown mixer ", json::quote(kind),
           " (known: attention, mla, retention, gated_retention)");
    }
    for (Index r = 0; r < repeat; ++r) c.layers.push_back(b);
  }
  return c;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
