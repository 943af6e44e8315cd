#pragma once
// Helpers of the conformance tests (test_conformance.cpp): the golden
// case directory, an editable copy of a case, comparison with expected.* tensors, and running the
// eigenformer-run binary (EIGENFORMER_RUN_EXE, set by tests/CMakeLists.txt) as a subprocess.
#include <eigenformer/conformance/runner.hpp>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace eftest {

namespace ef = eigenformer;
namespace efc = eigenformer::conformance;

inline std::string data_dir() {
#ifdef EIGENFORMER_TEST_DATA_DIR
  return EIGENFORMER_TEST_DATA_DIR;
#else
  return "tests/data";
#endif
}
inline std::string golden_run_dir() { return data_dir() + "/golden/run"; }

/// Files `<dir>/*<suffix>` (names without the suffix), sorted.
inline std::vector<std::string> files_in(const std::string& dir, const std::string& suffix = ".safetensors") {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(n.substr(0, n.size() - suffix.size()));
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}
inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// A unique path in the test temp directory.
inline std::string temp_path(const std::string& stem) {
  static int counter = 0;
  return ::testing::TempDir() + "eftest_" + std::to_string(::getpid()) + "_" + std::to_string(++counter) + "_" + stem;
}

/// An editable copy of a case file: metadata and tensors (raw bytes).
class CaseFile {
 public:
  struct Tensor {
    std::string name;
    ef::Dtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };

  CaseFile() = default;
  explicit CaseFile(const ef::SafeTensors& st) : meta_(st.metadata()) {
    for (const ef::TensorInfo& t : st.tensors()) {
      const std::uint8_t* p = st.data(t);
      tensors_.push_back(Tensor{t.name, t.dtype, t.shape, std::vector<std::uint8_t>(p, p + (t.end - t.begin))});
    }
  }
  static CaseFile open(const std::string& golden_case) {
    return CaseFile(ef::SafeTensors::open(golden_run_dir() + "/" + golden_case + ".safetensors"));
  }

  CaseFile& set(const std::string& k, const std::string& v) {
    meta_[k] = v;
    return *this;
  }
  CaseFile& erase(const std::string& k) {
    meta_.erase(k);
    return *this;
  }
  CaseFile& drop(const std::string& name) {
    tensors_.erase(std::remove_if(tensors_.begin(), tensors_.end(), [&](const Tensor& t) { return t.name == name; }),
                   tensors_.end());
    return *this;
  }
  /// Adds or replaces a tensor.
  CaseFile& put(const std::string& name, ef::Dtype d, std::vector<std::int64_t> shape, std::vector<std::uint8_t> b) {
    for (Tensor& t : tensors_)
      if (t.name == name) {
        t = Tensor{name, d, std::move(shape), std::move(b)};
        return *this;
      }
    tensors_.push_back(Tensor{name, d, std::move(shape), std::move(b)});
    return *this;
  }
  /// A tensor of zeros.
  CaseFile& zeros(const std::string& name, ef::Dtype d, std::vector<std::int64_t> shape) {
    std::size_t n = ef::dtype_size(d);
    for (auto s : shape) n *= static_cast<std::size_t>(s);
    return put(name, d, std::move(shape), std::vector<std::uint8_t>(n, 0));
  }
  template <class T>
  CaseFile& values(const std::string& name, ef::Dtype d, std::vector<std::int64_t> shape, const std::vector<T>& v) {
    std::vector<std::uint8_t> b(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
    return put(name, d, std::move(shape), std::move(b));
  }
  const Tensor* find(const std::string& name) const {
    for (const Tensor& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }

  std::vector<std::uint8_t> bytes() const {
    ef::SafeTensorsWriter w;
    for (const auto& kv : meta_) w.set_metadata(kv.first, kv.second);
    for (const Tensor& t : tensors_) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    return w.to_bytes();
  }
  ef::SafeTensors parse(const std::string& source = "<memory>") const { return ef::SafeTensors::from_bytes(bytes(), source); }

 private:
  std::map<std::string, std::string> meta_;
  std::vector<Tensor> tensors_;
};

/// The tolerance a case is held to: metadata expected.tolerance, else the layer's for the mode.
inline double case_tolerance(const ef::SafeTensors& c) {
  const auto& m = c.metadata();
  if (m.count("expected.tolerance")) return std::stod(m.at("expected.tolerance"));
  const efc::LayerSpec* L = efc::registry().find(m.at("layer"));
  const auto mode = m.count("mode") ? m.at("mode") : L->modes().front().name;
  return L->tolerance(mode);
}

/// Compares every output.X of `out` with expected.X of the case (rows where expected.X.row_mask is 0
/// skipped): max |got - want| <= tol * (1 + max |want|). Returns the worst err / bound ratio.
inline double expect_matches_expected(const ef::SafeTensors& c, const ef::SafeTensors& out) {
  const double tol = case_tolerance(c);
  double worst = 0;
  int compared = 0;
  for (const ef::TensorInfo& t : out.tensors()) {
    EXPECT_EQ(t.name.rfind("output.", 0), 0u) << t.name;
    const std::string x = t.name.substr(7);
    const ef::TensorInfo* e = c.find("expected." + x);
    if (!e) {
      ADD_FAILURE() << "case has no expected." << x;
      continue;
    }
    EXPECT_EQ(t.shape, e->shape) << t.name;
    if (t.shape != e->shape) continue;
    const auto got = out.to_vector<double>(t.name);
    const auto want = c.to_vector<double>(e->name);
    const std::int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(t.shape.empty() ? 1 : t.shape[0]), 1);
    if (c.contains("expected." + x + ".row_mask")) rows = c.to_vector<std::int64_t>("expected." + x + ".row_mask");
    double err = 0, mag = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (!rows[i / static_cast<std::size_t>(cols)]) continue;
      err = std::max(err, std::fabs(got[i] - want[i]));
      mag = std::max(mag, std::fabs(want[i]));
    }
    const double bound = tol * (1 + mag);
    EXPECT_LE(err, bound) << t.name << ": max |diff| " << err << ", tolerance " << tol;
    worst = std::max(worst, bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0));
    ++compared;
  }
  EXPECT_GT(compared, 0);
  for (const ef::TensorInfo& t : c.tensors()) {  // every expected output was produced
    const bool expected_output = t.name.rfind("expected.", 0) == 0 && t.name.find(".row_mask") == std::string::npos;
    if (!expected_output) continue;
    EXPECT_TRUE(out.contains("output." + t.name.substr(9))) << "no output for " << t.name;
  }
  return worst;
}

inline bool have_binary() {
#ifdef EIGENFORMER_RUN_EXE
  return true;
#else
  return false;
#endif
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Proc {
  int code = -1;  ///< exit status; 128 + signal if killed
  std::string out, err;
};

/// Runs eigenformer-run with `args`, capturing stdout and stderr.
inline Proc run_binary(const std::vector<std::string>& args) {
  Proc p;
#ifdef EIGENFORMER_RUN_EXE
  // The build does not order this test after the binary (tests/CMakeLists.txt): say so if it is missing.
  if (::access(EIGENFORMER_RUN_EXE, X_OK) != 0) {
    p.err = std::string("eigenformer-run is not built: no executable ") + EIGENFORMER_RUN_EXE +
            " (build the whole tree, or its target)";
    ADD_FAILURE() << p.err;
    return p;
  }
  const std::string o = temp_path("stdout.txt"), e = temp_path("stderr.txt");
  std::string cmd = shell_quote(EIGENFORMER_RUN_EXE);
  for (const std::string& a : args) cmd += " " + shell_quote(a);
  cmd += " >" + shell_quote(o) + " 2>" + shell_quote(e);
  const int st = std::system(cmd.c_str());
  p.code = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  p.out = read_text(o);
  p.err = read_text(e);
  std::remove(o.c_str());
  std::remove(e.c_str());
#else
  (void)args;
#endif
  return p;
}

}  // namespace eftest
