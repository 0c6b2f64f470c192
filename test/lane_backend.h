#pragma once
// The GPU's way of running a row functor, on the CPU: `lanes` threads walk each row together in groups of
// `group_width` lanes, and sync(), the row reductions and the group reductions are barriers across them, as a
// CUDA thread block's __syncthreads and a warp's shuffles are. The op harness runs every op on it, so a row
// functor that leaves elements to no lane, reads what another lane writes without a barrier between, or
// reduces over the wrong lanes fails on any machine, with no GPU.
#include <barrier>
#include <memory>
#include <thread>
#include <vector>

#include "cpu/cpu_backend.h"

namespace qft::test {

// What the lanes of one launch share.
struct LaneTeam {
  LaneTeam(int lanes, int group_width) : lanes(lanes), group_width(group_width), all(lanes), slots(size_t(lanes)),
                                         group_slots(size_t(lanes)) {
    for (int g = 0; g < lanes / group_width; ++g) groups.push_back(std::make_unique<std::barrier<>>(group_width));
  }
  const int lanes, group_width;
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> groups;
  std::vector<float> slots, group_slots;  // one value per lane: row reductions, group reductions
};

// The row context of one lane (see SerialRow in ops/kernels.h).
class LaneRow {
 public:
  LaneRow(LaneTeam& team, int lane) : t_(&team), lane_(lane) {}
  int lane() const { return lane_; }
  int width() const { return t_->lanes; }
  float sum(float v) const { return reduce(v, [](float a, float b) { return a + b; }); }
  float max(float v) const { return reduce(v, [](float a, float b) { return a > b ? a : b; }); }
  void sync() const { t_->all.arrive_and_wait(); }
  int group() const { return lane_ / t_->group_width; }
  int groups() const { return t_->lanes / t_->group_width; }
  int group_lane() const { return lane_ % t_->group_width; }
  int group_width() const { return t_->group_width; }
  float group_max(float v) const {
    std::barrier<>& b = *t_->groups[size_t(group())];
    b.arrive_and_wait();  // the group's previous reduction has been read
    t_->group_slots[size_t(lane_)] = v;
    b.arrive_and_wait();
    const int first = group() * t_->group_width;
    float m = t_->group_slots[size_t(first)];
    for (int i = 1; i < t_->group_width; ++i) m = m > t_->group_slots[size_t(first + i)] ? m : t_->group_slots[size_t(first + i)];
    return m;
  }
  void group_sync() const { t_->groups[size_t(group())]->arrive_and_wait(); }

 private:
  template <class Op>
  float reduce(float v, Op op) const {
    t_->all.arrive_and_wait();  // the previous reduction has been read
    t_->slots[size_t(lane_)] = v;
    t_->all.arrive_and_wait();
    float r = t_->slots[0];
    for (int i = 1; i < t_->lanes; ++i) r = op(r, t_->slots[size_t(i)]);
    return r;
  }
  LaneTeam* t_;
  int lane_;
};

// The CPU backend with row functors run by lanes: 64 of them in two groups of 32 (a thread block of two warps).
class LaneBackend final : public HostBackend<LaneBackend> {
 public:
  static constexpr int kLanes = 64, kGroupWidth = 32;
  explicit LaneBackend(DType activations = DType::F32) : HostBackend(activations) {}
  std::string name() const override { return "cpu-lanes"; }

  template <class F>
  void launch_rows(const F& f, int64_t rows) {
    if (rows <= 0) return;
    LaneTeam team(kLanes, kGroupWidth);
    std::vector<std::jthread> lanes;
    for (int l = 0; l < kLanes; ++l) {
      lanes.emplace_back([&, l] {
        const LaneRow row(team, l);
        for (int64_t r = 0; r < rows; ++r) f(row, r);
      });
    }
  }
};

}  // namespace qft::test
