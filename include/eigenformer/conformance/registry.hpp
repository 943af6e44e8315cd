#pragma once
// Conformance registry: every layer that `eigenformer-run` (tools/eigenformer-run) and the conformance
// tests can run declares here, once, what a case file for it holds:
//   - its configuration keys (names of the reference implementation where it has them), each with a
//     type, a default (or "required"), a range or a list of choices, and a description;
//   - its modes (e.g. `prefill` and `decode`), the first being the default;
//   - its weights (reference checkpoint names, no prefix), inputs (`input.*`) and outputs
//     (`output.*`), each with a symbolic shape such as [num_attention_heads * head_dim, hidden_size]
//     or [T, hidden_size], a dtype class, and the condition and modes under which it is present;
//   - a `resolve` function (config -> the layer's own config, plus derived sizes such as head_dim)
//     and a `run` function (the layer's forward on the case's tensors).
// The generic runner (runner.hpp) validates a case against the declaration before anything runs, so a
// layer's code only builds the layer and calls it; `eigenformer-run --list` and docs/conformance.md
// are generated from the same declarations.
//
// A new layer registers itself with one function and one line in conformance/builtin.hpp:
//
//   inline void register_rms_norm(Registry& r) {
//     LayerSpec s("rms_norm", "transformers LlamaRMSNorm; GemmaRMSNorm with unit_offset");
//     s.key(KeySpec::integer("hidden_size").required().min(1).doc("width"))
//      .key(KeySpec::number("rms_norm_eps").default_value("1e-06").min(0).doc("epsilon"))
//      .weight("weight", {"hidden_size"})
//      .input("hidden_states", {"T", "hidden_size"})
//      .output("hidden_states", {"T", "hidden_size"})
//      .tolerance(1e-5)
//      .implement(
//          [](const Config& c, Plan&) { return RMSNorm<float>::Config{c.integer("hidden_size"), ...}; },
//          [](const Case& k, const RMSNorm<float>::Config& cfg, Outputs& out) {
//            auto norm = RMSNorm<float>::load(k.file(), "", cfg);
//            out.add("hidden_states", norm.forward(k.matrix("input.hidden_states")));
//          });
//     r.add(std::move(s));
//   }
//
// Shapes are products of size symbols and integer literals ("3*num_attention_heads*head_dim"). Every
// integer config key is a size symbol; resolve() can add derived ones with Plan::set_size. `T` is the
// token count, bound by the first input that uses it and then required to agree everywhere.
// Conditions (`when`) are terms joined by " & ": `flag` (a boolean key or a Plan::set_flag), `!flag`,
// or `key=a|b` (a string key, or a Plan::set_name, equal to one of the alternatives).

#include <algorithm>
#include <any>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/safetensors.hpp"
#include "json.hpp"

namespace eigenformer {
namespace conformance {

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

/// What is wrong with a case; every rejected case reports exactly one.
enum class Problem {
  usage,               ///< the command line (eigenformer-run only)
  io,                  ///< a file cannot be opened, read or written
  malformed_file,      ///< not a valid safetensors file
  unknown_layer,       ///< metadata "layer" is absent or names no registered layer
  unknown_config_key,  ///< a metadata key the layer does not declare (and not reserved)
  missing_config_key,  ///< a required config key is absent
  bad_config_value,    ///< a config value does not parse, is out of range, or the layer rejects it
  missing_weight,      ///< a weight the configuration needs is absent
  extra_tensor,        ///< a tensor the configuration and mode do not use
  missing_input,       ///< a required `input.*` tensor is absent
  shape_mismatch,      ///< a tensor has the wrong shape
  dtype_mismatch,      ///< a tensor has a dtype of the wrong class (integer weights, float ids, ...)
  bad_input,           ///< an input value is invalid (token id out of range, mask value not 0/1, ...)
  internal,            ///< a bug: the layer broke its own declaration, or an unexpected exception
};

inline const char* to_string(Problem p) noexcept {
  switch (p) {
    case Problem::usage: return "usage";
    case Problem::io: return "i/o error";
    case Problem::malformed_file: return "malformed file";
    case Problem::unknown_layer: return "unknown layer";
    case Problem::unknown_config_key: return "unknown config key";
    case Problem::missing_config_key: return "missing config key";
    case Problem::bad_config_value: return "bad config value";
    case Problem::missing_weight: return "missing weight";
    case Problem::extra_tensor: return "extra tensor";
    case Problem::missing_input: return "missing input";
    case Problem::shape_mismatch: return "shape mismatch";
    case Problem::dtype_mismatch: return "dtype mismatch";
    case Problem::bad_input: return "bad input";
    case Problem::internal: return "internal error";
  }
  return "?";
}

inline ErrorKind error_kind(Problem p) noexcept {
  switch (p) {
    case Problem::io: return ErrorKind::io;
    case Problem::malformed_file: return ErrorKind::format;
    case Problem::missing_weight: return ErrorKind::missing_weight;
    case Problem::shape_mismatch: return ErrorKind::shape_mismatch;
    case Problem::dtype_mismatch: return ErrorKind::dtype_mismatch;
    case Problem::unknown_layer:
    case Problem::unknown_config_key:
    case Problem::missing_config_key:
    case Problem::bad_config_value: return ErrorKind::config;
    default: return ErrorKind::invalid_argument;
  }
}

/// An eigenformer::Error that also says which Problem a case has.
class CaseError : public Error {
 public:
  CaseError(Problem p, std::string where, const std::string& detail)
      : Error(error_kind(p), std::move(where), detail), problem_(p) {}
  Problem problem() const noexcept { return problem_; }

 private:
  Problem problem_;
};

/// The concatenation of `a` (streamed with operator<<).
template <class... A>
std::string concat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

template <class... A>
[[noreturn]] void case_fail(Problem p, std::string_view where, const A&... a) {
  throw CaseError(p, std::string(where), concat(a...));
}

/// 'name' quoted for messages: control and non-ASCII bytes escaped as \xNN, cut after 120 bytes.
inline std::string quote_name(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "'";
  const std::size_t n = std::min<std::size_t>(s.size(), 120);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  return out + "'";
}

inline std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Configuration keys
// ------------------------------------------------------------------------------------------------

enum class ValueType {
  integer,  ///< JSON integer text: `32`
  number,   ///< JSON number text: `1e-06`, `10000.0`, `32`
  boolean,  ///< `true` / `false`
  string,   ///< the metadata string itself: `silu`
  json,     ///< a JSON object as text (HF `rope_scaling`), or `null`
};

inline const char* to_string(ValueType t) noexcept {
  switch (t) {
    case ValueType::integer: return "integer";
    case ValueType::number: return "number";
    case ValueType::boolean: return "boolean";
    case ValueType::string: return "string";
    case ValueType::json: return "JSON object";
  }
  return "?";
}

/// One configuration key of a layer. Build with the factories and chain the setters:
/// `KeySpec::integer("head_dim").nullable().min(1).doc("...")`.
struct KeySpec {
  std::string name;
  ValueType type = ValueType::integer;
  bool is_required = false;
  bool is_nullable = false;         ///< `null` is accepted (meaning: unset, see doc)
  std::string default_text;         ///< the default as metadata text (unless required)
  std::vector<std::string> choices;  ///< strings: the accepted values
  std::optional<double> min_value, max_value;
  bool min_exclusive = false;
  std::string modes_text;  ///< documentation: the modes that use it ("" = all)
  std::string description;

  static KeySpec make(std::string n, ValueType t, std::string def) {
    KeySpec k;
    k.name = std::move(n);
    k.type = t;
    k.default_text = std::move(def);
    return k;
  }
  static KeySpec integer(std::string n) { return make(std::move(n), ValueType::integer, "0"); }
  static KeySpec number(std::string n) { return make(std::move(n), ValueType::number, "0.0"); }
  static KeySpec boolean(std::string n) { return make(std::move(n), ValueType::boolean, "false"); }
  static KeySpec string(std::string n) { return make(std::move(n), ValueType::string, ""); }
  static KeySpec json(std::string n) {
    KeySpec k = make(std::move(n), ValueType::json, "null");
    k.is_nullable = true;
    return k;
  }

  KeySpec& required() {
    is_required = true;
    return *this;
  }
  KeySpec& default_value(std::string text) {
    default_text = std::move(text);
    is_required = false;
    return *this;
  }
  /// `null` accepted; the default becomes `null` unless set after this.
  KeySpec& nullable() {
    is_nullable = true;
    default_text = "null";
    return *this;
  }
  KeySpec& oneOf(std::vector<std::string> c) {
    choices = std::move(c);
    return *this;
  }
  KeySpec& min(double v, bool exclusive = false) {
    min_value = v;
    min_exclusive = exclusive;
    return *this;
  }
  KeySpec& max(double v) {
    max_value = v;
    return *this;
  }
  KeySpec& modes(std::string text) {
    modes_text = std::move(text);
    return *this;
  }
  KeySpec& doc(std::string text) {
    description = std::move(text);
    return *this;
  }
};

/// A parsed configuration value.
struct ConfigValue {
  ValueType type = ValueType::integer;
  std::string text;       ///< as written in the case (or the default)
  bool given = false;     ///< present in the case's metadata
  bool null = false;
  std::int64_t integer = 0;
  double number = 0.0;
  bool boolean = false;
  JsonValue json;  ///< json keys (and the parse of integer/number/boolean text)
};

/// The configuration of one case: every declared key, parsed, with defaults filled in.
class Config {
 public:
  void set(const std::string& name, ConfigValue v) { values_[name] = std::move(v); }

  bool declared(const std::string& name) const { return values_.count(name) != 0; }
  const ConfigValue& value(const std::string& name) const {
    const auto it = values_.find(name);
    if (it == values_.end()) case_fail(Problem::internal, "Config", "undeclared config key ", quote_name(name));
    return it->second;
  }
  /// In the case's metadata (not defaulted).
  bool given(const std::string& name) const { return value(name).given; }
  bool is_null(const std::string& name) const { return value(name).null; }
  const std::string& text(const std::string& name) const { return value(name).text; }

  std::int64_t integer(const std::string& name) const { return typed(name, ValueType::integer).integer; }
  std::optional<std::int64_t> optional_integer(const std::string& name) const {
    const ConfigValue& v = typed(name, ValueType::integer);
    return v.null ? std::nullopt : std::optional<std::int64_t>(v.integer);
  }
  double number(const std::string& name) const { return typed(name, ValueType::number).number; }
  std::optional<double> optional_number(const std::string& name) const {
    const ConfigValue& v = typed(name, ValueType::number);
    return v.null ? std::nullopt : std::optional<double>(v.number);
  }
  bool boolean(const std::string& name) const { return typed(name, ValueType::boolean).boolean; }
  std::optional<bool> optional_boolean(const std::string& name) const {
    const ConfigValue& v = typed(name, ValueType::boolean);
    return v.null ? std::nullopt : std::optional<bool>(v.boolean);
  }
  const std::string& string(const std::string& name) const { return typed(name, ValueType::string).text; }
  const JsonValue& json(const std::string& name) const { return typed(name, ValueType::json).json; }

  const std::map<std::string, ConfigValue>& values() const noexcept { return values_; }

 private:
  const ConfigValue& typed(const std::string& name, ValueType t) const {
    const ConfigValue& v = value(name);
    if (v.type != t)
      case_fail(Problem::internal, "Config", "config key ", quote_name(name), " is a ", to_string(v.type), ", read as a ",
                to_string(t));
    return v;
  }
  std::map<std::string, ConfigValue> values_;
};

// ------------------------------------------------------------------------------------------------
// Tensors
// ------------------------------------------------------------------------------------------------

enum class TensorRole { weight, input, output };

enum class DtypeClass {
  floating,  ///< F32, F16, BF16, F64 (converted to float)
  integer,   ///< I64, I32, U8, I8
  mask,      ///< I64, I32, U8, I8 or BOOL, values 0 / 1
};

inline const char* to_string(DtypeClass d) noexcept {
  switch (d) {
    case DtypeClass::floating: return "float (F32, F16, BF16, F64)";
    case DtypeClass::integer: return "integer (I64, I32, U8, I8)";
    case DtypeClass::mask: return "0/1 (I64, I32, U8, I8, BOOL)";
  }
  return "?";
}

/// The short name --list uses: float, integer, 0/1.
inline const char* short_name(DtypeClass d) noexcept {
  switch (d) {
    case DtypeClass::floating: return "float";
    case DtypeClass::integer: return "integer";
    case DtypeClass::mask: return "0/1";
  }
  return "?";
}

inline bool dtype_in_class(Dtype d, DtypeClass c) noexcept {
  switch (c) {
    case DtypeClass::floating: return d == Dtype::F32 || d == Dtype::F16 || d == Dtype::BF16 || d == Dtype::F64;
    case DtypeClass::integer: return d == Dtype::I64 || d == Dtype::I32 || d == Dtype::U8 || d == Dtype::I8;
    case DtypeClass::mask:
      return d == Dtype::I64 || d == Dtype::I32 || d == Dtype::U8 || d == Dtype::I8 || d == Dtype::BOOL;
  }
  return false;
}

/// One tensor of a case (weights: reference checkpoint name; inputs/outputs: with their prefix).
struct TensorSpec {
  TensorRole role = TensorRole::weight;
  std::string name;                ///< `q_proj.weight`, `input.hidden_states`, `output.hidden_states`
  std::vector<std::string> shape;  ///< dim expressions: `T`, `hidden_size`, `3*num_attention_heads*head_dim`
  DtypeClass dtype = DtypeClass::floating;
  std::string when;                ///< condition ("" = always)
  std::vector<std::string> modes;  ///< modes it is used in (empty = all)
  bool optional = false;           ///< inputs: may be absent
  std::string description;
};

inline std::string shape_doc(const std::vector<std::string>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    std::string d = shape[i];
    for (std::size_t p = 0; (p = d.find('*', p)) != std::string::npos; p += 3) d.replace(p, 1, " * ");
    s += d;
  }
  return s + "]";
}

/// What resolve() derives from a Config: size symbols (every integer key, plus derived sizes), flags
/// (every boolean key, plus derived flags), names (every string key, plus derived names), and the
/// layer's own state (its library config) for run().
class Plan {
 public:
  void set_size(const std::string& n, std::int64_t v) { sizes_[n] = v; }
  void set_flag(const std::string& n, bool v) { flags_[n] = v; }
  void set_name(const std::string& n, std::string v) { names_[n] = std::move(v); }
  bool has_size(const std::string& n) const { return sizes_.count(n) != 0; }
  std::int64_t size(const std::string& n) const {
    const auto it = sizes_.find(n);
    if (it == sizes_.end()) case_fail(Problem::internal, "Plan", "unknown size symbol ", quote_name(n));
    return it->second;
  }
  bool flag(const std::string& n) const {
    const auto it = flags_.find(n);
    if (it == flags_.end()) case_fail(Problem::internal, "Plan", "unknown flag ", quote_name(n));
    return it->second;
  }
  const std::string& name(const std::string& n) const {
    const auto it = names_.find(n);
    if (it == names_.end()) case_fail(Problem::internal, "Plan", "unknown name ", quote_name(n));
    return it->second;
  }

  /// Whether condition `when` holds (see the file comment for the syntax).
  bool holds(const std::string& when) const {
    std::size_t start = 0;
    while (start < when.size()) {
      std::size_t end = when.find(" & ", start);
      if (end == std::string::npos) end = when.size();
      const std::string term = when.substr(start, end - start);
      start = end + 3;
      const auto eq = term.find('=');
      if (eq != std::string::npos) {
        const std::string& v = name(term.substr(0, eq));
        bool any = false;
        std::string alts = term.substr(eq + 1);
        std::size_t a = 0;
        while (a <= alts.size()) {
          std::size_t b = alts.find('|', a);
          if (b == std::string::npos) b = alts.size();
          if (alts.compare(a, b - a, v) == 0 && b - a == v.size()) any = true;
          a = b + 1;
        }
        if (!any) return false;
      } else if (!term.empty() && term[0] == '!') {
        if (flag(term.substr(1))) return false;
      } else if (!flag(term)) {
        return false;
      }
    }
    return true;
  }

  /// The value of a dim expression (a product of symbols and integer literals); `T` is `tokens`
  /// (< 0: unbound, returned as -1). Overflow is a bad config value.
  std::int64_t eval_dim(const std::string& expr, std::int64_t tokens) const {
    std::int64_t v = 1;
    std::size_t start = 0;
    while (start <= expr.size()) {
      std::size_t end = expr.find('*', start);
      if (end == std::string::npos) end = expr.size();
      const std::string f = expr.substr(start, end - start);
      start = end + 1;
      std::int64_t x;
      if (f == "T") {
        if (tokens < 0) return -1;
        x = tokens;
      } else if (!f.empty() && f.find_first_not_of("0123456789") == std::string::npos) {
        x = std::stoll(f);
      } else {
        x = size(f);
      }
      if (x < 0) case_fail(Problem::bad_config_value, "shape", quote_name(f), " = ", x, " is negative");
      if (x != 0 && v > std::numeric_limits<std::int64_t>::max() / x)
        case_fail(Problem::bad_config_value, "shape", "the size ", expr, " overflows 64 bits");
      v *= x;
    }
    return v;
  }

  std::any state;  ///< the value resolve() returned, passed to run()

  const std::map<std::string, std::int64_t>& sizes() const noexcept { return sizes_; }

 private:
  std::map<std::string, std::int64_t> sizes_;
  std::map<std::string, bool> flags_;
  std::map<std::string, std::string> names_;
};

// ------------------------------------------------------------------------------------------------
// What a layer's run() sees and writes
// ------------------------------------------------------------------------------------------------

/// A validated case: the file, its config, the plan and the mode. Tensor accessors take full names
/// (`input.hidden_states`, `q_proj.weight`); shapes and dtypes have been checked already.
class Case {
 public:
  Case(const SafeTensors& file, const Config& config, const Plan& plan, std::string layer, std::string mode,
       std::int64_t tokens)
      : file_(file), config_(config), plan_(plan), layer_(std::move(layer)), mode_(std::move(mode)), tokens_(tokens) {}

  const SafeTensors& file() const noexcept { return file_; }
  const Config& config() const noexcept { return config_; }
  const Plan& plan() const noexcept { return plan_; }
  const std::string& layer() const noexcept { return layer_; }
  const std::string& mode() const noexcept { return mode_; }
  /// T, the token count bound by the inputs (-1 if no input has a T dim).
  std::int64_t tokens() const noexcept { return tokens_; }
  std::string where() const { return layer_ + " case " + quote_name(file_.source()) + " (mode " + mode_ + ")"; }

  bool has(const std::string& name) const { return file_.contains(name); }
  Matrix<float> matrix(const std::string& name) const { return file_.matrix<float>(name, -1, -1, where()); }
  Vector<float> vector(const std::string& name) const { return file_.vector<float>(name, -1, where()); }
  /// An integer or BOOL tensor as int64, flattened.
  std::vector<std::int64_t> integers(const std::string& name) const {
    const TensorInfo& t = file_.info(name, where());
    if (t.dtype == Dtype::BOOL) {
      const std::uint8_t* p = file_.data(t);
      std::vector<std::int64_t> v(static_cast<std::size_t>(t.numel()));
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = p[i];
      return v;
    }
    return file_.to_vector<std::int64_t>(name, where());
  }

 private:
  const SafeTensors& file_;
  const Config& config_;
  const Plan& plan_;
  std::string layer_, mode_;
  std::int64_t tokens_;
};

/// The outputs a run produces (names without the `output.` prefix), stored as F32.
class Outputs {
 public:
  struct Item {
    std::string name;  ///< with the `output.` prefix
    std::vector<std::int64_t> shape;
    std::vector<float> data;
  };

  void add(const std::string& name, const Eigen::Ref<const Matrix<float>>& m) {
    Item it{"output." + name, {m.rows(), m.cols()}, {}};
    it.data.resize(static_cast<std::size_t>(m.size()));
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) it.data[static_cast<std::size_t>(i * m.cols() + j)] = m(i, j);
    push(std::move(it));
  }
  void add_vector(const std::string& name, const Vector<float>& v) {
    push(Item{"output." + name, {v.size()}, std::vector<float>(v.data(), v.data() + v.size())});
  }

  const std::vector<Item>& items() const noexcept { return items_; }

 private:
  void push(Item it) {
    for (const Item& o : items_)
      if (o.name == it.name) case_fail(Problem::internal, "Outputs", "output ", quote_name(it.name), " written twice");
    items_.push_back(std::move(it));
  }
  std::vector<Item> items_;
};

// ------------------------------------------------------------------------------------------------
// Layer declarations
// ------------------------------------------------------------------------------------------------

struct ModeSpec {
  std::string name;
  std::string description;
  double tolerance = -1;  ///< < 0: the layer's tolerance
};

class LayerSpec {
 public:
  using ResolveFn = std::function<void(const Config&, Plan&)>;
  using RunFn = std::function<void(const Case&, Outputs&)>;

  LayerSpec(std::string name, std::string reference, std::string description = {})
      : name_(std::move(name)), reference_(std::move(reference)), description_(std::move(description)) {}

  /// Declares a mode; the first declared is the default. A layer without modes has one, `forward`.
  LayerSpec& mode(std::string name, std::string description = {}) {
    modes_.push_back(ModeSpec{std::move(name), std::move(description), -1});
    return *this;
  }
  LayerSpec& key(KeySpec k) {
    keys_.push_back(std::move(k));
    return *this;
  }
  LayerSpec& weight(std::string name, std::vector<std::string> shape, DtypeClass d = DtypeClass::floating) {
    return tensor(TensorRole::weight, std::move(name), std::move(shape), d);
  }
  /// An input, named without its prefix: input("hidden_states", ...) is `input.hidden_states`.
  LayerSpec& input(const std::string& name, std::vector<std::string> shape, DtypeClass d = DtypeClass::floating) {
    return tensor(TensorRole::input, "input." + name, std::move(shape), d);
  }
  /// An output, named without its prefix; always F32.
  LayerSpec& output(const std::string& name, std::vector<std::string> shape) {
    return tensor(TensorRole::output, "output." + name, std::move(shape), DtypeClass::floating);
  }
  /// Modifiers of the tensor declared last.
  LayerSpec& when(std::string condition) {
    last().when = std::move(condition);
    return *this;
  }
  LayerSpec& in_modes(std::vector<std::string> modes) {
    last().modes = std::move(modes);
    return *this;
  }
  LayerSpec& optional() {
    last().optional = true;
    return *this;
  }
  LayerSpec& doc(std::string text) {
    last().description = std::move(text);
    return *this;
  }
  /// The accuracy the conformance tests hold the layer to: max |got - want| <= tol * (1 + max |want|)
  /// against the reference's float32 output. With a mode, for that mode only.
  LayerSpec& tolerance(double tol, const std::string& mode = {}) {
    if (mode.empty()) {
      tolerance_ = tol;
    } else {
      for (ModeSpec& m : modes_)
        if (m.name == mode) m.tolerance = tol;
    }
    return *this;
  }
  /// Free text for --list (e.g. how reference checkpoints map onto the names).
  LayerSpec& notes(std::string text) {
    notes_.push_back(std::move(text));
    return *this;
  }

  /// The layer's code: `resolve(const Config&, Plan&) -> State` validates and derives (throw
  /// CaseError(bad_config_value) or eigenformer::Error(config) for bad values), `run(const Case&,
  /// const State&, Outputs&)` runs the layer. State is any copyable type (usually the library config).
  template <class Resolve, class Run>
  LayerSpec& implement(Resolve resolve, Run run) {
    using State = std::decay_t<std::invoke_result_t<Resolve&, const Config&, Plan&>>;
    resolve_ = [resolve](const Config& c, Plan& p) { p.state = resolve(c, p); };
    run_ = [run](const Case& k, Outputs& out) { run(k, std::any_cast<const State&>(k.plan().state), out); };
    return *this;
  }

  const std::string& name() const noexcept { return name_; }
  const std::string& reference() const noexcept { return reference_; }
  const std::string& description() const noexcept { return description_; }
  const std::vector<std::string>& notes() const noexcept { return notes_; }
  const std::vector<ModeSpec>& modes() const noexcept { return modes_; }
  const std::vector<KeySpec>& keys() const noexcept { return keys_; }
  const std::vector<TensorSpec>& tensors() const noexcept { return tensors_; }
  double tolerance(const std::string& mode = {}) const {
    for (const ModeSpec& m : modes_)
      if (m.name == mode && m.tolerance >= 0) return m.tolerance;
    return tolerance_;
  }
  const KeySpec* find_key(const std::string& n) const {
    for (const KeySpec& k : keys_)
      if (k.name == n) return &k;
    return nullptr;
  }
  const ResolveFn& resolve_fn() const noexcept { return resolve_; }
  const RunFn& run_fn() const noexcept { return run_; }

 private:
  LayerSpec& tensor(TensorRole role, std::string name, std::vector<std::string> shape, DtypeClass d) {
    TensorSpec t;
    t.role = role;
    t.name = std::move(name);
    t.shape = std::move(shape);
    t.dtype = d;
    tensors_.push_back(std::move(t));
    return *this;
  }
  TensorSpec& last() {
    if (tensors_.empty())
      case_fail(Problem::internal, "LayerSpec " + name_, "when/in_modes/optional/doc before any tensor");
    return tensors_.back();
  }

  std::string name_, reference_, description_;
  std::vector<std::string> notes_;
  std::vector<ModeSpec> modes_;
  std::vector<KeySpec> keys_;
  std::vector<TensorSpec> tensors_;
  double tolerance_ = 1e-5;
  ResolveFn resolve_;
  RunFn run_;
};

/// The registered layers, in registration order.
class Registry {
 public:
  /// Adds a layer; throws ErrorKind::invalid_argument for a duplicate name or an incomplete declaration.
  void add(LayerSpec s) {
    const std::string where = "conformance::Registry";
    check(!s.name().empty() && find(s.name()) == nullptr, ErrorKind::invalid_argument, where, "layer name ",
          quote_name(s.name()), " is empty or registered twice");
    check(static_cast<bool>(s.resolve_fn()) && static_cast<bool>(s.run_fn()), ErrorKind::invalid_argument, where,
          "layer ", quote_name(s.name()), " has no implement(resolve, run)");
    if (s.modes().empty()) s.mode("forward", "the layer's forward pass");
    std::set<std::string> names;
    for (const KeySpec& k : s.keys()) {
      check(names.insert(k.name).second && !is_reserved_key(k.name), ErrorKind::invalid_argument, where, "layer ",
            quote_name(s.name()), ": config key ", quote_name(k.name), " is declared twice or reserved");
    }
    for (const TensorSpec& t : s.tensors()) {
      check(t.role == TensorRole::weight ? !has_reserved_prefix(t.name) : true, ErrorKind::invalid_argument, where,
            "layer ", quote_name(s.name()), ": weight ", quote_name(t.name), " uses a reserved prefix");
      for (const std::string& m : t.modes) {
        bool known = false;
        for (const ModeSpec& ms : s.modes()) known = known || ms.name == m;
        check(known, ErrorKind::invalid_argument, where, "layer ", quote_name(s.name()), ": tensor ", quote_name(t.name),
              " names unknown mode ", quote_name(m));
      }
    }
    layers_.push_back(std::move(s));
  }

  const LayerSpec* find(const std::string& name) const {
    for (const LayerSpec& l : layers_)
      if (l.name() == name) return &l;
    return nullptr;
  }
  const std::vector<LayerSpec>& layers() const noexcept { return layers_; }
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (const LayerSpec& l : layers_) v.push_back(l.name());
    return v;
  }

  /// Metadata keys every case may carry besides the layer's config keys (ignored by the runner).
  static const std::vector<std::string>& reserved_keys() {
    static const std::vector<std::string> k = {"layer", "mode", "case", "source", "generator", "description",
                                               "format"};
    return k;
  }
  /// Prefixes of metadata keys and tensor names the runner ignores.
  static const std::vector<std::string>& ignored_prefixes() {
    static const std::vector<std::string> p = {"expected.", "info."};
    return p;
  }
  static bool has_prefix(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
  static bool is_ignored(const std::string& s) {
    for (const std::string& p : ignored_prefixes())
      if (has_prefix(s, p)) return true;
    return false;
  }
  static bool is_reserved_key(const std::string& k) {
    for (const std::string& r : reserved_keys())
      if (k == r) return true;
    return is_ignored(k);
  }
  static bool has_reserved_prefix(const std::string& name) {
    return is_ignored(name) || has_prefix(name, "input.") || has_prefix(name, "output.");
  }

 private:
  std::vector<LayerSpec> layers_;
};

}  // namespace conformance
}  // namespace eigenformer
