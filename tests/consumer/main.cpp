#include <eigenformer/eigenformer.hpp>

#include <cstdio>

int main() {
  using namespace eigenformer;
  Linear<float> lin(Linear<float>::Config{4, 3, true});
  lin.weight().setOnes();
  lin.bias().setConstant(0.5f);
  Matrix<float> x = Matrix<float>::Ones(2, 4);
  Matrix<float> y = lin.forward(x);
  RMSNorm<float> norm(RMSNorm<float>::Config{3, 1e-6});
  Matrix<float> z = norm.forward(y);
  std::printf("eigenformer %s (%s): y(0,0) = %.2f, z(1,2) = %.4f\n", EIGENFORMER_VERSION_STRING, isa_name(), y(0, 0),
              z(1, 2));
  return (y(0, 0) == 4.5f && z(1, 2) > 0.99f && z(1, 2) < 1.01f) ? 0 : 1;
}
