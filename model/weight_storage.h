#pragma once
// How a model stores its weights: the parameter roles (model/params.h) say which tensors this applies to.
namespace qft {

struct WeightStorage {
  bool int8 = false;               // hybrid INT8 (dense INT8 + sparse fp32 outliers) for every matrix-role tensor
  double outlier_fraction = 0.01;  // per row, kept in fp32
  bool operator==(const WeightStorage& o) const {
    return int8 == o.int8 && (!int8 || outlier_fraction == o.outlier_fraction);
  }
};

}  // namespace qft
