// ODR check, part A: the whole library included in a second translation unit must link
// (every header function inline or a template) and behave the same.
#include <eigenformer/eigenformer.hpp>

float odr_part_a() {
  eigenformer::Matrix<float> x = eigenformer::Matrix<float>::Constant(2, 5, 0.5f);
  eigenformer::ops::softmax<float>(x);
  return x(1, 3);
}
