// Data parallel with sharded state (dist/data_parallel.h) under mpirun -np 2 and -np 3: N ranks with A
// micro-batches each reach, bit for bit, the weights and momentum one process reaches with grad_accum N * A over
// the same micro-batches, full fine-tuning and LoRA alike. Every rank computes the one-process reference itself and compares its own shard.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "model/hf_model.h"
#include "test/dist/world.h"
#include "test/helpers.h"
#include "trainer/data_parallel.h"
#include "trainer/optimizer.h"
#include "trainer/plan.h"

using namespace qft;

namespace {

struct Setting {
  bool grad_int8;
  int micro_per_rank;
  std::optional<double> clip;  // small enough to scale every step's gradient down
  bool shard_weights = false;
  enum { None, GseLion, Fp32Adamw } lora = None;  // LoRA adapters on a frozen base, and their optimizer
  bool mlp_pieces = false;  // the backward takes the MLP by blocks of intermediate columns (long sequences)
};


// M micro-batches of fresh tokens, the same on every rank (from the shared seed); some labels masked.
std::vector<Batch> global_micro_batches(uint64_t seed, int M, int vocab) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, vocab - 1);
  std::bernoulli_distribution masked(0.2);
  std::vector<Batch> out;
  const int B = 2, T = 12;
  for (int m = 0; m < M; ++m) {
    std::vector<int32_t> ids(size_t(B * T)), labels(size_t(B * T));
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = tok(rng);
      labels[i] = masked(rng) ? kIgnoreIndex : ids[i];
    }
    out.push_back(Batch::from_labels(B, T, ids, labels));
  }
  return out;
}

template <class T>
std::vector<T> read(Backend& be, const Buffer& b, size_t offset_elems, size_t elems) {
  std::vector<T> out(elems);
  if (elems) be.copy_to_host(out.data(), static_cast<const T*>(b.get()) + offset_elems, elems * sizeof(T));
  return out;
}

}  // namespace

TEST_CASE("N ranks with sharded state reach one process's weights and momentum bit for bit", "[dist][train]") {
  test::World w;
  CpuBackend& be = w.be;
  Communicator* comm = w.comm.get();
  const uint64_t seed = w.seed;
  const int N = w.n(), me = w.me();
  const HfModel hf(test::fixture("gqa_tied"));

  for (const Setting s : {Setting{true, 1, {}}, Setting{false, 2, {}}, Setting{true, 2, {}}, Setting{true, 1, 1e-3},
                          Setting{false, 2, 1e-3}, Setting{true, 1, {}, true}, Setting{true, 2, 1e-3, true},
                          Setting{false, 2, 1e-3, false, Setting::GseLion}, Setting{false, 1, {}, true, Setting::GseLion},
                          Setting{false, 2, {}, false, Setting::Fp32Adamw},
                          Setting{true, 2, 1e-3, true, Setting::None, true}}) {
    INFO("rank " << me << " of " << N << ", " << (s.grad_int8 ? "INT8" : "fp32") << " accumulators, "
                 << s.micro_per_rank << " micro-batches per rank, " << (s.clip ? "clipped" : "not clipped")
                 << (s.shard_weights ? ", weights sharded" : "")
                 << (s.lora == Setting::GseLion ? ", GSE LoRA with Lion" : s.lora == Setting::Fp32Adamw ? ", fp32 LoRA with AdamW" : "")
                 << (s.mlp_pieces ? ", the MLP in pieces" : "")
                 << ", seed " << seed);
    WeightStorage storage{true, 0.02};
    if (s.lora != Setting::None) storage.lora = test::small_lora(s.lora == Setting::GseLion, 8, seed);
    OptimizerSettings os;
    os.momentum_int8 = true;
    os.grad_int8 = s.grad_int8;
    os.weight_decay = 0.1f;
    os.seed = seed;
    os.adamw = s.lora == Setting::Fp32Adamw;
    LlamaModel ref(hf, be, storage), dp(hf, be, storage, s.shard_weights ? comm : nullptr);
    if (s.mlp_pieces) ref.mlp_chunk_bytes = dp.mlp_chunk_bytes = 256;  // blocks of 2 columns of 24 tokens
    Optimizer ref_opt(ref, os), dp_opt(dp, os, RowShards{me, N});
    GradAccumulators ref_acc(ref, os), dp_acc(dp, os, RowShards{me, N}, s.micro_per_rank > 1);
    if (s.micro_per_rank == 1) CHECK(dp_acc.bytes() <= size_t(dp.params().size()));  // nothing kept but empty buffers

    const int M = N * s.micro_per_rank;
    for (uint32_t step = 1; step <= 2; ++step) {
      const std::vector<Batch> all = global_micro_batches(seed + step, M, hf.config().vocab_size);
      std::vector<Batch> mine;
      for (int i = 0; i < s.micro_per_rank; ++i) mine.push_back(all[size_t(i * N + me)]);
      for (Optimizer* o : {&ref_opt, &dp_opt}) o->set_step(step);
      for (GradAccumulators* a : {&ref_acc, &dp_acc}) a->set_step(step);
      const StepResult r1 = train_step(ref, ref_opt, &ref_acc, all, 3e-3f, s.clip);
      const StepResult rn = data_parallel_step(*comm, dp, dp_opt, dp_acc, mine, 3e-3f, s.clip);
      CHECK(rn.tokens == r1.tokens);
      CHECK(rn.grad_norm == r1.grad_norm);  // the same double: row sums added in one order
      if (s.clip) CHECK(*r1.grad_norm > 10 * *s.clip);
      if (s.micro_per_rank == 1) {
        CHECK(rn.loss == r1.loss);
      } else {
        CHECK(rn.loss == Approx(r1.loss).epsilon(1e-12));  // summed rank by rank: the double's last bits
      }
    }

    int64_t weights_apart = 0, momentum_apart = 0, moved = 0;
    for (int i = 0; i < int(ref.params().size()); ++i) {
      const Param& a = ref.params()[size_t(i)];
      const Param& b = dp.params()[size_t(i)];
      const auto wa = ref.read_weight(i), wb = dp.read_weight(i);
      weights_apart += std::memcmp(wa.data(), wb.data(), wa.size() * 4) != 0;
      if (a.frozen) {
        // The frozen base is its INT8 load on every rank.
      } else if (a.name.find(".lora_B.") != std::string::npos) {
        moved += std::any_of(wa.begin(), wa.end(), [](float v) { return v != 0.0f; });  // B starts at zero
      } else if (a.name.find(".lora_A.") == std::string::npos) {
        moved += std::memcmp(wa.data(), hf.read_f32(a.name).data(), wa.size() * 4) != 0;
      }
      const RowRange rows = a.frozen ? RowRange{0, 0} : RowShards{me, N}.mine(a.rows);  // frozen: no state
      const StateTensor& ma = ref_opt.momentum(i);
      const StateTensor& mb = dp_opt.momentum(i);
      if (ma.quantized()) {
        const size_t cols = size_t(a.cols), blocks = size_t((a.cols + os.block_size - 1) / os.block_size);
        momentum_apart += read<int8_t>(be, ma.int8.q, size_t(rows.begin) * cols, size_t(rows.size()) * cols) !=
                          read<int8_t>(be, mb.int8.q, 0, size_t(rows.size()) * cols);
        momentum_apart += read<float>(be, ma.int8.absmax, size_t(rows.begin) * blocks, size_t(rows.size()) * blocks) !=
                          read<float>(be, mb.int8.absmax, 0, size_t(rows.size()) * blocks);
      } else {
        const size_t n = size_t(rows.size() * a.cols);
        const auto x = read<float>(be, ma.fp32, size_t(rows.begin * a.cols), n), y = read<float>(be, mb.fp32, 0, n);
        momentum_apart += n > 0 && std::memcmp(x.data(), y.data(), n * 4) != 0;  // a rank may own no row of a norm
      }
      if (os.adamw) {
        const size_t n = size_t(rows.size() * a.cols);
        const auto x = read<float>(be, ref_opt.variance(i).fp32, size_t(rows.begin * a.cols), n);
        const auto y = read<float>(be, dp_opt.variance(i).fp32, 0, n);
        momentum_apart += n > 0 && std::memcmp(x.data(), y.data(), n * 4) != 0;
      }
      if (a.quantized()) {  // the row scales this rank holds
        const RowRange held = dp.held_rows(i);
        weights_apart += read<float>(be, a.int8.scale, size_t(held.begin), size_t(held.size())) !=
                         read<float>(be, b.int8.scale, 0, size_t(held.size()));
        if (s.shard_weights) CHECK(b.int8.rows == RowShards{me, N}.mine(a.rows).size());
      }
    }
    CHECK(moved > 0);  // the steps changed the weights: the comparison is not of untouched copies
    CHECK(weights_apart == 0);
    CHECK(momentum_apart == 0);
  }
}

TEST_CASE("ranks that disagree on a step's micro-batches all stop with an error instead of waiting", "[dist][bad-input]") {
  test::World w;
  Communicator* comm = w.comm.get();
  const HfModel hf(test::fixture("gqa_tied"));
  LlamaModel model(hf, w.be, WeightStorage{true, 0.02});
  OptimizerSettings os;
  Optimizer opt(model, os, RowShards{comm->rank(), comm->world_size()});
  GradAccumulators acc(model, os, RowShards{comm->rank(), comm->world_size()});
  // Rank 0 brings two micro-batches, the others one.
  const std::vector<Batch> all = global_micro_batches(7, 2, hf.config().vocab_size);
  const std::vector<Batch> mine(all.begin(), all.begin() + (comm->rank() == 0 ? 2 : 1));
  CHECK_THROWS_WITH(data_parallel_step(*comm, model, opt, acc, mine, 1e-3f, std::nullopt),
                    Catch::Contains("micro-batches in this step"));
}

// qft plan --set dist.world_size=N plans the last rank (it holds the most rows) from the same code: its plan equals
// what that rank's allocator measures, within 5%, with the weights replicated or sharded.
TEST_CASE("the per-rank plan equals the last rank's measured peak within 5%", "[dist][plan]") {
  test::World w;  // its backend serves the communicator; each measured run gets a fresh one
  Communicator* comm = w.comm.get();
  const uint64_t seed = w.seed;
  for (bool shard : {false, true}) {
    RunConfig cfg;
    cfg.model.path = test::fixture("gqa_tied");
    cfg.data.seq_len = 40;
    cfg.data.packing = true;
    cfg.train.batch_size = 3;
    cfg.train.grad_accum = 2;
    cfg.dist.world_size = comm->world_size();
    cfg.dist.shard_weights = shard;
    const HfModel hf(cfg.model.path);
    const MemoryPlan plan = plan_memory(cfg, plan_architecture(cfg), plan_target(Device::Cpu));

    CpuBackend be;
    LlamaModel model(hf, be, cfg.weight_storage(), shard ? comm : nullptr);
    model.stack_storage = cfg.train.stack_dtype;
    const RowShards shards{comm->rank(), comm->world_size()};
    Optimizer opt(model, cfg.optimizer_settings(), shards);
    GradAccumulators acc(model, cfg.optimizer_settings(), shards);
    std::vector<Batch> micro;
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> tok(3, hf.config().vocab_size - 1);
    for (int i = 0; i < cfg.train.grad_accum; ++i) {  // full rows, every position a target: the plan's batch
      std::vector<int32_t> ids(size_t(cfg.train.batch_size * cfg.data.seq_len));
      for (int32_t& t : ids) t = tok(rng);
      Batch b = Batch::from_labels(cfg.train.batch_size, cfg.data.seq_len, ids, ids);
      b.doc_start.assign(ids.size(), 0);
      micro.push_back(b);
    }
    data_parallel_step(*comm, model, opt, acc, micro, 1e-3f, std::nullopt);
    if (comm->rank() + 1 == comm->world_size()) {
      const double measured = double(be.memory().peak_bytes);
      INFO((shard ? "sharded" : "replicated") << " weights: plan " << plan.peak_bytes << " measured " << measured);
      CHECK(std::fabs(double(plan.peak_bytes) - measured) <= 0.05 * measured);
      CHECK(plan.world_size == comm->world_size());
    }
  }
}
