#pragma once
// Shared by the golden tests that read fixtures written by tools/make_golden_*.py: where the
// fixtures of one family live, their names, and their metadata (plain strings, or JSON text such as
// HF's rope_scaling, read with the library's own strict parser).
#include <dirent.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <eigenformer/core/json.hpp>
#include <eigenformer/io/safetensors.hpp>

namespace eftest {

/// tests/data/golden/<family>.
inline std::string golden_dir(const std::string& family) {
#ifdef EIGENFORMER_TEST_DATA_DIR
  return std::string(EIGENFORMER_TEST_DATA_DIR) + "/golden/" + family;
#else
  return "tests/data/golden/" + family;
#endif
}

/// The fixture names (file names without .safetensors) of a family, sorted.
inline std::vector<std::string> golden_fixtures(const std::string& family) {
  std::vector<std::string> out;
  const std::string ext = ".safetensors";
  if (DIR* d = opendir(golden_dir(family).c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0)
        out.push_back(n.substr(0, n.size() - ext.size()));
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// A metadata entry of a fixture; throws if it is missing.
inline const std::string& meta(const eigenformer::SafeTensors& st, const std::string& key) {
  const auto it = st.metadata().find(key);
  if (it == st.metadata().end()) throw std::runtime_error("fixture lacks metadata " + key);
  return it->second;
}

/// A member of a JSON object text such as HF's rope_scaling ({"factor": 8.0, ...}); null if absent.
inline eigenformer::json::Value json_member(const std::string& json_text, const std::string& key) {
  const eigenformer::json::Value v =
      eigenformer::json::parse(json_text, "golden fixture", eigenformer::ErrorKind::format, "metadata");
  const eigenformer::json::Value* m = v.find(key);
  return m ? *m : eigenformer::json::Value{};
}

/// A number member; false if absent or not a number.
inline bool json_number(const std::string& json_text, const std::string& key, double& out) {
  const eigenformer::json::Value m = json_member(json_text, key);
  if (m.kind != eigenformer::json::Kind::number) return false;
  out = m.number;
  return true;
}

/// A string member; "" if absent or not a string.
inline std::string json_string(const std::string& json_text, const std::string& key) {
  const eigenformer::json::Value m = json_member(json_text, key);
  return m.kind == eigenformer::json::Kind::string ? m.text : std::string();
}

}  // namespace eftest
