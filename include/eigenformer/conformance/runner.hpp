#pragma once
// Runs one conformance case: a safetensors file that names a layer, its configuration and mode in
// `__metadata__`, and holds the layer's weights (reference checkpoint names, no prefix) and inputs
// (`input.*`). The result is a safetensors file of `output.*` tensors. docs/conformance.md describes
// the format; `eigenformer-run` (tools/eigenformer-run) is a thin command line over run_cli().
//
//   SafeTensors c = SafeTensors::open("case.safetensors");
//   SafeTensorsWriter out = conformance::run_case(c);   // throws conformance::CaseError
//   out.write("out.safetensors");
//
// Before the layer runs, the case is checked against the layer's declaration (registry.hpp), and
// every problem is reported as a CaseError naming it (Problem) and the offending key or tensor:
// unknown layer, unknown / missing config key, bad config value, missing weight, extra tensor,
// missing input, wrong shape, wrong dtype class; errors the layer itself raises while running are
// mapped onto the same classes (eigenformer::Error kind config -> bad config value, invalid argument
// -> bad input, ...).

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <new>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "../version.hpp"
#include "builtin.hpp"
#include "registry.hpp"

namespace eigenformer {
namespace conformance {
// In the ISA namespace: these call registry(), whose layers run ISA-specific code.
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

inline bool parse_int64(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  std::size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size() || s.find_first_not_of("0123456789", i) != std::string::npos) return false;
  if (s.size() > i + 1 && s[i] == '0') return false;  // JSON: no leading zeros
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno == ERANGE) return false;
  out = static_cast<std::int64_t>(v);
  return true;
}

inline ConfigValue parse_value(const KeySpec& k, const std::string& text, bool given, const std::string& where) {
  ConfigValue v;
  v.type = k.type;
  v.text = text;
  v.given = given;
  const std::string what = "config key " + quote_name(k.name) + " = " + quote_name(text);
  if (k.type != ValueType::string && text == "null") {
    if (!k.is_nullable) case_fail(Problem::bad_config_value, where, what, ": null is not allowed (expected a ", to_string(k.type), ")");
    v.null = true;
    return v;
  }
  switch (k.type) {
    case ValueType::integer:
      if (!parse_int64(text, v.integer))
        case_fail(Problem::bad_config_value, where, what, ": expected an integer (JSON integer text, e.g. 32)");
      v.number = static_cast<double>(v.integer);
      break;
    case ValueType::number: {
      JsonValue j;
      try {
        j = parse_json(text, where);
      } catch (const Error&) {
        j.kind = JsonValue::Kind::null;
      }
      if (j.kind != JsonValue::Kind::number || text.empty() || text.front() == ' ' || text.back() == ' ')
        case_fail(Problem::bad_config_value, where, what, ": expected a number (JSON number text, e.g. 1e-06)");
      v.number = j.number;
      break;
    }
    case ValueType::boolean:
      if (text != "true" && text != "false")
        case_fail(Problem::bad_config_value, where, what, ": expected true or false");
      v.boolean = text == "true";
      break;
    case ValueType::string:
      if (!k.choices.empty()) {
        bool ok = false;
        for (const std::string& c : k.choices) ok = ok || c == text;
        if (!ok) case_fail(Problem::bad_config_value, where, what, ": expected one of ", join(k.choices));
      }
      break;
    case ValueType::json:
      try {
        v.json = parse_json(text, where);
      } catch (const Error& e) {
        case_fail(Problem::bad_config_value, where, what, ": ", e.detail());
      }
      if (v.json.kind != JsonValue::Kind::object)
        case_fail(Problem::bad_config_value, where, what, ": expected a JSON object or null, got ",
                  json_kind_name(v.json.kind));
      break;
  }
  if (k.type == ValueType::integer || k.type == ValueType::number) {
    const double x = v.number;
    if (k.min_value && (k.min_exclusive ? !(x > *k.min_value) : !(x >= *k.min_value)))
      case_fail(Problem::bad_config_value, where, what, ": must be ", k.min_exclusive ? "> " : ">= ", *k.min_value);
    if (k.max_value && !(x <= *k.max_value))
      case_fail(Problem::bad_config_value, where, what, ": must be <= ", *k.max_value);
  }
  return v;
}

inline std::string shape_with_values(const TensorSpec& t, const Plan& p, std::int64_t tokens) {
  std::ostringstream os;
  os << shape_doc(t.shape);
  bool symbolic = false;
  for (const std::string& d : t.shape) symbolic = symbolic || d.find_first_not_of("0123456789") != std::string::npos;
  if (!symbolic) return os.str();
  std::vector<std::string> vals;
  for (const std::string& d : t.shape) {
    const std::int64_t v = p.eval_dim(d, tokens);
    vals.push_back(v < 0 ? std::string("T") : std::to_string(v));
  }
  os << " = [" << join(vals) << "]";
  return os.str();
}

inline bool in_mode(const TensorSpec& t, const std::string& mode) {
  if (t.modes.empty()) return true;
  for (const std::string& m : t.modes)
    if (m == mode) return true;
  return false;
}

}  // namespace detail

/// The parsed and validated configuration, plan and mode of a case (everything but the run).
struct Prepared {
  const LayerSpec* layer = nullptr;
  std::string mode;
  Config config;
  Plan plan;
  std::int64_t tokens = -1;
};

/// Checks a case against its layer's declaration; throws CaseError on the first problem.
inline Prepared prepare_case(const SafeTensors& st, const Registry& reg) {
  Prepared P;
  std::string where = "case " + quote_name(st.source());
  const auto& meta = st.metadata();

  // Layer and mode.
  const auto lit = meta.find("layer");
  if (lit == meta.end())
    case_fail(Problem::unknown_layer, where, "__metadata__ has no \"layer\" entry naming the layer to run (one of: ",
              join(reg.names()), ")");
  P.layer = reg.find(lit->second);
  if (!P.layer)
    case_fail(Problem::unknown_layer, where, "unknown layer ", quote_name(lit->second), " (registered: ", join(reg.names()),
              ")");
  const LayerSpec& L = *P.layer;
  std::vector<std::string> mode_names;
  for (const ModeSpec& m : L.modes()) mode_names.push_back(m.name);
  const auto mit = meta.find("mode");
  P.mode = mit == meta.end() ? L.modes().front().name : mit->second;
  where = L.name() + " " + where;
  bool mode_ok = false;
  for (const std::string& m : mode_names) mode_ok = mode_ok || m == P.mode;
  if (!mode_ok)
    case_fail(Problem::bad_config_value, where, "mode ", quote_name(P.mode), " is not a mode of layer ", L.name(),
              " (modes: ", join(mode_names), ")");
  where += " (mode " + P.mode + ")";

  // Config keys: unknown ones first (all of them), then each declared key parsed or defaulted.
  std::vector<std::string> unknown;
  for (const auto& kv : meta)
    if (!Registry::is_reserved_key(kv.first) && !L.find_key(kv.first)) unknown.push_back(quote_name(kv.first));
  if (!unknown.empty()) {
    std::vector<std::string> known;
    for (const KeySpec& k : L.keys()) known.push_back(k.name);
    case_fail(Problem::unknown_config_key, where, "unknown config key", unknown.size() > 1 ? "s " : " ", join(unknown),
              " for layer ", L.name(), " (its keys: ", join(known), "; reserved: ", join(Registry::reserved_keys()),
              ", expected.*, info.*)");
  }
  for (const KeySpec& k : L.keys()) {
    const auto it = meta.find(k.name);
    if (it == meta.end() && k.is_required)
      case_fail(Problem::missing_config_key, where, "required config key ", quote_name(k.name), " (", to_string(k.type),
                ") is missing from __metadata__");
    P.config.set(k.name, detail::parse_value(k, it == meta.end() ? k.default_text : it->second, it != meta.end(),
                                             where));
  }

  // Sizes, flags and names from the keys; then the layer's own resolution.
  for (const auto& kv : P.config.values()) {
    const ConfigValue& v = kv.second;
    if (v.type == ValueType::integer && !v.null) P.plan.set_size(kv.first, v.integer);
    if (v.type == ValueType::boolean && !v.null) P.plan.set_flag(kv.first, v.boolean);
    if (v.type == ValueType::string) P.plan.set_name(kv.first, v.text);
  }
  P.plan.set_name("mode", P.mode);
  try {
    L.resolve_fn()(P.config, P.plan);
  } catch (const CaseError& e) {
    if (e.problem() == Problem::internal) throw;
    throw CaseError(e.problem(), where, e.detail());
  } catch (const Error& e) {
    case_fail(Problem::bad_config_value, where, e.where(), ": ", e.detail());
  }

  // Tensors: the ones this config and mode use; weights first (their shapes follow from the config
  // alone), then inputs (the first with a T dim binds T).
  std::vector<const TensorSpec*> used;
  for (TensorRole role : {TensorRole::weight, TensorRole::input})
    for (const TensorSpec& t : L.tensors())
      if (t.role == role && detail::in_mode(t, P.mode) && P.plan.holds(t.when)) used.push_back(&t);

  // Missing.
  for (const TensorSpec* t : used) {
    if (st.contains(t->name) || t->optional) continue;
    const bool weight = t->role == TensorRole::weight;
    std::string hint;
    for (const TensorInfo& ti : st.tensors()) {  // a prefix on the file's names?
      const std::string& n = ti.name;
      if (n.size() > t->name.size() + 1 && n.compare(n.size() - t->name.size(), t->name.size(), t->name) == 0 &&
          n[n.size() - t->name.size() - 1] == '.') {
        hint = "; the file has " + quote_name(n) + ": case weights carry no prefix";
        break;
      }
    }
    case_fail(weight ? Problem::missing_weight : Problem::missing_input, where, weight ? "weight " : "input ",
              quote_name(t->name), " ", detail::shape_with_values(*t, P.plan, -1), " is missing", hint);
  }
  // Extra.
  for (const TensorInfo& ti : st.tensors()) {
    if (Registry::is_ignored(ti.name)) continue;
    bool known = false;
    for (const TensorSpec* t : used) known = known || t->name == ti.name;
    if (known) continue;
    std::string why;
    const TensorSpec* decl = nullptr;
    for (const TensorSpec& t : L.tensors())
      if (t.name == ti.name && t.role != TensorRole::output) decl = &t;
    if (Registry::has_prefix(ti.name, "output."))
      why = ": output.* names are what the runner writes; store expected outputs as expected.*";
    else if (decl && !detail::in_mode(*decl, P.mode))
      why = ": not used in mode " + P.mode + " (only in " + join(decl->modes) + ")";
    else if (decl)
      why = ": not used unless " + decl->when;
    else
      why = Registry::has_prefix(ti.name, "input.") ? ": layer " + L.name() + " has no such input"
                                                     : ": layer " + L.name() + " has no such weight";
    case_fail(Problem::extra_tensor, where, "tensor ", quote_name(ti.name), " ", shape_str(ti.shape), " is not used", why);
  }
  // Dtype and shape of each present tensor.
  std::string t_source;
  for (const TensorSpec* t : used) {
    const TensorInfo* ti = st.find(t->name);
    if (!ti) continue;
    if (!dtype_in_class(ti->dtype, t->dtype))
      case_fail(Problem::dtype_mismatch, where, "tensor ", quote_name(t->name), " has dtype ", dtype_name(ti->dtype),
                ", expected ", to_string(t->dtype));
    bool ok = ti->shape.size() == t->shape.size();
    for (std::size_t i = 0; ok && i < t->shape.size(); ++i) {
      std::int64_t want = P.plan.eval_dim(t->shape[i], P.tokens);
      if (want < 0 && t->shape[i] == "T") {  // bind T
        P.tokens = ti->shape[i];
        t_source = t->name;
        want = P.tokens;
      }
      ok = ti->shape[i] == want;
    }
    if (!ok)
      case_fail(Problem::shape_mismatch, where, "tensor ", quote_name(t->name), " has shape ", shape_str(ti->shape),
                ", expected ", detail::shape_with_values(*t, P.plan, P.tokens),
                P.tokens >= 0 && !t_source.empty() && t_source != t->name ? " (T = " + std::to_string(P.tokens) +
                                                                                 " from " + t_source + ")"
                                                                           : std::string());
  }
  if (!t_source.empty() && P.tokens < 1)
    case_fail(Problem::bad_input, where, "input ", quote_name(t_source), " has ", P.tokens,
              " tokens; a case needs at least one");
  // Mask values.
  for (const TensorSpec* t : used) {
    if (t->dtype != DtypeClass::mask || !st.contains(t->name)) continue;
    const Case k(st, P.config, P.plan, L.name(), P.mode, P.tokens);
    const auto v = k.integers(t->name);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i] != 0 && v[i] != 1)
        case_fail(Problem::bad_input, where, "tensor ", quote_name(t->name), " element ", i, " = ", v[i],
                  ": a mask holds 0 or 1");
  }
  return P;
}

/// Runs a case; returns the output file (`output.*` tensors, F32; metadata layer, mode, generator).
inline SafeTensorsWriter run_case(const SafeTensors& st, const Registry& reg = registry()) {
  Prepared P = prepare_case(st, reg);
  const LayerSpec& L = *P.layer;
  const Case k(st, P.config, P.plan, L.name(), P.mode, P.tokens);
  const std::string where = k.where();
  Outputs out;
  try {
    L.run_fn()(k, out);
  } catch (const CaseError&) {
    throw;
  } catch (const Error& e) {
    Problem p = Problem::internal;
    switch (e.kind()) {
      case ErrorKind::config:
      case ErrorKind::capacity: p = Problem::bad_config_value; break;
      case ErrorKind::invalid_argument: p = Problem::bad_input; break;
      case ErrorKind::shape_mismatch: p = Problem::shape_mismatch; break;
      case ErrorKind::missing_weight: p = Problem::missing_weight; break;
      case ErrorKind::dtype_mismatch: p = Problem::dtype_mismatch; break;
      case ErrorKind::format: p = Problem::malformed_file; break;
      case ErrorKind::io: p = Problem::io; break;
    }
    case_fail(p, where, e.where(), ": ", e.detail());
  }
  // The outputs must be exactly the declared ones, with the declared shapes.
  std::vector<const TensorSpec*> want;
  for (const TensorSpec& t : L.tensors())
    if (t.role == TensorRole::output && detail::in_mode(t, P.mode) && P.plan.holds(t.when)) want.push_back(&t);
  for (const TensorSpec* t : want) {
    const Outputs::Item* got = nullptr;
    for (const Outputs::Item& it : out.items())
      if (it.name == t->name) got = &it;
    if (!got) case_fail(Problem::internal, where, "the layer did not write output ", quote_name(t->name));
    bool ok = got->shape.size() == t->shape.size();
    for (std::size_t i = 0; ok && i < t->shape.size(); ++i) ok = got->shape[i] == P.plan.eval_dim(t->shape[i], P.tokens);
    if (!ok)
      case_fail(Problem::internal, where, "output ", quote_name(t->name), " has shape ", shape_str(got->shape),
                ", declared ", detail::shape_with_values(*t, P.plan, P.tokens));
  }
  SafeTensorsWriter w;
  for (const Outputs::Item& it : out.items()) {
    bool declared = false;
    for (const TensorSpec* t : want) declared = declared || t->name == it.name;
    if (!declared) case_fail(Problem::internal, where, "the layer wrote undeclared output ", quote_name(it.name));
    w.add(it.name, Dtype::F32, it.shape, it.data.data(), it.data.size() * sizeof(float));
  }
  w.set_metadata("layer", L.name());
  w.set_metadata("mode", P.mode);
  w.set_metadata("generator", std::string("eigenformer-run ") + EIGENFORMER_VERSION_STRING + " (" + isa_name() + ")");
  const auto cit = st.metadata().find("case");
  if (cit != st.metadata().end()) w.set_metadata("case", cit->second);
  return w;
}

// ------------------------------------------------------------------------------------------------
// --list: the registry as Markdown (docs/conformance.md embeds it verbatim)
// ------------------------------------------------------------------------------------------------

namespace detail {
inline std::string md_cell(std::string s) {
  for (std::size_t p = 0; (p = s.find('|', p)) != std::string::npos; p += 2) s.replace(p, 1, "\\|");
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}
inline std::string fmt_double(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
inline std::string key_type(const KeySpec& k) {
  std::string s = to_string(k.type);
  if (k.min_value) s += std::string(k.min_exclusive ? " > " : " >= ") + fmt_double(*k.min_value);
  if (k.max_value) s += " <= " + fmt_double(*k.max_value);
  if (!k.choices.empty()) s += ": " + join(k.choices, " | ");
  if (k.is_nullable && k.type != ValueType::json) s += " or null";
  return s;
}
}  // namespace detail

/// Every registered layer: modes, config keys (type, default, meaning), weights, inputs and outputs
/// (shape, dtype, condition, modes), tolerance. Markdown.
inline std::string list_markdown(const Registry& reg = registry()) {
  std::ostringstream os;
  os << "Registered layers: " << join(reg.names()) << ".\n\n"
     << "Shapes: `T` is the number of tokens (set by the inputs); other symbols are config keys or sizes derived "
        "from them. Dtypes: float = F32, F16, BF16 or F64 (read as float32); integer = I64, I32, U8 or I8; 0/1 = "
        "one of those or BOOL, holding only 0 and 1; outputs are F32. Present: always, or when the condition holds "
        "(`flag`, `!flag`, `key=value|value`, terms joined by `&`), in the listed modes; optional inputs may be "
        "absent.\n";
  for (const LayerSpec& L : reg.layers()) {
    os << "\n### `" << L.name() << "`\n\n";
    os << "Reference: " << L.reference() << ".";
    if (!L.description().empty()) os << " " << L.description();
    os << "\n\nModes:";
    for (std::size_t i = 0; i < L.modes().size(); ++i) {
      const ModeSpec& m = L.modes()[i];
      os << (i ? ";" : "") << " `" << m.name << "`" << (i == 0 ? " (default)" : "");
      if (!m.description.empty()) os << ": " << m.description;
    }
    os << ".\n\nTolerance (max |got - want| <= tol * (1 + max |want|), against the reference's float32 output): "
       << detail::fmt_double(L.tolerance());
    for (const ModeSpec& m : L.modes())
      if (m.tolerance >= 0) os << "; mode " << m.name << ": " << detail::fmt_double(m.tolerance);
    os << ".\n\n";
    os << "| config key | type | default | meaning |\n|---|---|---|---|\n";
    for (const KeySpec& k : L.keys()) {
      std::string meaning = k.description;
      if (!k.modes_text.empty()) meaning += " (mode " + k.modes_text + ")";
      os << "| `" << k.name << "` | " << detail::md_cell(detail::key_type(k)) << " | "
         << (k.is_required ? std::string("required") : "`" + k.default_text + "`") << " | "
         << detail::md_cell(meaning) << " |\n";
    }
    os << "\n| tensor | shape | dtype | present | meaning |\n|---|---|---|---|---|\n";
    for (TensorRole role : {TensorRole::weight, TensorRole::input, TensorRole::output}) {
      for (const TensorSpec& t : L.tensors()) {
        if (t.role != role) continue;
        std::vector<std::string> cond;
        if (!t.when.empty()) cond.push_back("`" + t.when + "`");
        if (!t.modes.empty()) cond.push_back("mode " + join(t.modes, ", "));
        if (t.optional) cond.emplace_back("optional");
        std::string present = cond.empty() ? std::string("always") : join(cond, "; ");
        os << "| `" << t.name << "` | " << shape_doc(t.shape) << " | "
           << (role == TensorRole::output ? "F32" : short_name(t.dtype)) << " | "
           << detail::md_cell(present) << " | " << detail::md_cell(t.description) << " |\n";
      }
    }
    for (const std::string& n : L.notes()) os << "\n" << n << "\n";
  }
  return os.str();
}

// ------------------------------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------------------------------

/// Exit codes of eigenformer-run.
enum ExitCode : int {
  exit_ok = 0,
  exit_internal = 1,  ///< a bug or an unexpected exception (out of memory, ...)
  exit_usage = 2,     ///< bad command line
  exit_file = 3,      ///< a file cannot be read or written, or is not valid safetensors
  exit_case = 4,      ///< the case is invalid (every other Problem)
};

inline int exit_code(Problem p) noexcept {
  switch (p) {
    case Problem::usage: return exit_usage;
    case Problem::io:
    case Problem::malformed_file: return exit_file;
    case Problem::internal: return exit_internal;
    default: return exit_case;
  }
}

inline const char* cli_usage() noexcept {
  return "usage: eigenformer-run CASE.safetensors OUT.safetensors\n"
         "       eigenformer-run --list        every layer: config keys, weights, inputs, outputs (Markdown)\n"
         "       eigenformer-run --version\n"
         "Runs the layer a case file names (__metadata__ \"layer\", \"mode\" and config keys) on its weights\n"
         "and input.* tensors, and writes output.* tensors to OUT. See docs/conformance.md.\n"
         "Exit codes: 0 ok, 1 internal error, 2 usage, 3 file unreadable/unwritable/malformed, 4 invalid case.\n";
}

/// eigenformer-run's whole behaviour; never throws. Messages go to `err`, --list/--version to `out`.
inline int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                   const Registry* reg_in = nullptr) noexcept {
  const char* prog = "eigenformer-run";
  try {
    const Registry& reg = reg_in ? *reg_in : registry();
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i] ? argv[i] : "");
    if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
      out << cli_usage();
      return exit_ok;
    }
    if (args.size() == 1 && args[0] == "--version") {
      out << prog << " " << EIGENFORMER_VERSION_STRING << " (" << isa_name() << ")\n";
      return exit_ok;
    }
    if (args.size() == 1 && args[0] == "--list") {
      out << list_markdown(reg);
      return exit_ok;
    }
    if (args.size() != 2 || (!args[0].empty() && args[0][0] == '-') || (!args[1].empty() && args[1][0] == '-')) {
      err << prog << ": usage: bad arguments\n" << cli_usage();
      return exit_usage;
    }
    SafeTensors st = [&] {
      try {
        return SafeTensors::open(args[0], LoadMode::read);
      } catch (const Error& e) {
        throw CaseError(e.kind() == ErrorKind::io ? Problem::io : Problem::malformed_file, e.where(), e.detail());
      }
    }();
    SafeTensorsWriter w = run_case(st, reg);
    try {
      w.write(args[1]);
    } catch (const Error& e) {
      throw CaseError(Problem::io, e.where(), e.detail());
    }
    return exit_ok;
  } catch (const CaseError& e) {
    err << prog << ": " << to_string(e.problem()) << ": " << e.where() << ": " << e.detail() << "\n";
    return exit_code(e.problem());
  } catch (const Error& e) {
    err << prog << ": internal error: " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    err << prog << ": internal error: out of memory\n";
  } catch (const std::exception& e) {
    err << prog << ": internal error: " << e.what() << "\n";
  } catch (...) {
    err << prog << ": internal error: unknown exception\n";
  }
  return exit_internal;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
