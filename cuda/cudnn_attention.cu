// cuDNN's SDPA graphs (cuda/cudnn_attention.h). Layouts: q, out, dq (B, T, H, D) and k, v, dk, dv (B, T, KVH, D) are
// token-major, which cuDNN takes as (b, h, s, d) tensors with strides (s * h * d, d, h * d, 1). Packed documents
// become cuDNN's variable-length sequences: one sequence per document, ragged offsets pointing at its first token
// in every tensor, padding masks from the lengths, and causal masks within each.
#include "cuda/cudnn_attention.h"

#ifdef QFT_WITH_CUDNN_FRONTEND

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <tuple>

#include <cudnn_frontend.h>

#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/launch.cuh"

// The frontend calls libcudnn through this handle (NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING).
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}

namespace qft::cuda {

namespace {

namespace fe = cudnn_frontend;

// Tensor ids of the variant packs.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV, kSeqLen, kQOffsets, kKVOffsets };

int64_t next_pow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p *= 2;
  return p;
}

// Sequences cuDNN sees: the batch rows, or the packed documents padded to a power-of-two count and length.
struct Sequences {
  int64_t count, max_len;
  bool ragged;
};
Sequences sequences_of(int B, int T, const DocumentSpans& docs) {
  if (docs.count == 0) return {B, T, false};
  return {std::min<int64_t>(next_pow2(docs.count), int64_t(B) * T), std::min<int64_t>(next_pow2(docs.max_len), T), true};
}

// seq_len (padded,) and the ragged offsets (padded + 1,) of q-shaped and kv-shaped tensors, from the spans; the
// padding sequences are empty and start at the end.
struct DocumentLayout {
  const int32_t* start;
  int32_t* seq_len;
  int64_t* q_offsets;
  int64_t* kv_offsets;
  int64_t count, padded, q_stride, kv_stride;
  __device__ void operator()(int64_t i) const {
    const int64_t first = start[i < count ? i : count];
    q_offsets[i] = first * q_stride;
    kv_offsets[i] = first * kv_stride;
    if (i < padded) seq_len[i] = i < count ? start[i + 1] - start[i] : 0;
  }
};

struct GraphKey {
  bool ragged;
  int64_t b, s, H, KVH, D;
  bool operator<(const GraphKey& o) const {
    return std::tie(ragged, b, s, H, KVH, D) < std::tie(o.ragged, o.b, o.s, o.H, o.KVH, o.D);
  }
};

struct BuiltGraph {
  std::shared_ptr<fe::graph::Graph> graph;  // null: no plan for this shape
  int64_t workspace = 0;
  std::string why;
};

class CudnnSdpa final : public CudnnAttention {
 public:
  CudnnSdpa(cudaStream_t stream, cudnnHandle_t handle) : stream_(stream), handle_(handle) {}
  ~CudnnSdpa() override { fe::detail::destroy_handle(handle_); }

  std::string version() const override {
    const size_t v = fe::detail::get_backend_version();
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }

  int64_t stats_elems(int B, int T, int H, const DocumentSpans& docs) const override {
    const Sequences s = sequences_of(B, T, docs);
    return s.count * H * s.max_len;
  }

  bool forward(Backend& be, const AttentionParams& p, std::string* why) override {
    if (!bf16_only({p.out.dtype, p.q.dtype, p.k.dtype, p.v.dtype}, why) || !spans_given(p.doc_start, p.docs, why)) {
      return false;
    }
    const Sequences s = sequences_of(p.B, p.T, p.docs);
    const BuiltGraph* g = graphs({s.ragged, s.count, s.max_len, p.H, p.KVH, p.D}, false, why);
    if (!g) return false;
    std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<void*>(p.q.ptr)}, {kK, const_cast<void*>(p.k.ptr)},
                                               {kV, const_cast<void*>(p.v.ptr)}, {kO, p.out.ptr}, {kStats, p.lse}};
    run(be, *g, pack, p.docs, s, p.H, p.KVH, p.D);
    return true;
  }

  bool backward(Backend& be, const AttentionBackwardParams& p, std::string* why) override {
    if (!bf16_only({p.dq.dtype, p.dk.dtype, p.dv.dtype, p.dout.dtype, p.out.dtype, p.q.dtype}, why) ||
        !spans_given(p.doc_start, p.docs, why)) {
      return false;
    }
    const Sequences s = sequences_of(p.B, p.T, p.docs);
    const BuiltGraph* g = graphs({s.ragged, s.count, s.max_len, p.H, p.KVH, p.D}, true, why);
    if (!g) return false;
    std::unordered_map<int64_t, void*> pack = {
        {kQ, const_cast<void*>(p.q.ptr)},   {kK, const_cast<void*>(p.k.ptr)},
        {kV, const_cast<void*>(p.v.ptr)},   {kO, const_cast<void*>(p.out.ptr)},
        {kDO, const_cast<void*>(p.dout.ptr)}, {kStats, const_cast<float*>(p.lse)},
        {kDQ, p.dq.ptr}, {kDK, p.dk.ptr}, {kDV, p.dv.ptr}};
    run(be, *g, pack, p.docs, s, p.H, p.KVH, p.D);
    return true;
  }

 private:
  static bool fail(const std::string& reason, std::string* why) {
    *why = reason;
    return false;
  }
  // Packed documents reach cuDNN as spans; a caller that gave only doc_start gets qft's own attention.
  static bool spans_given(const int32_t* doc_start, const DocumentSpans& docs, std::string* why) {
    return !doc_start || docs.count > 0 || fail("packed documents without their spans", why);
  }
  static bool bf16_only(std::initializer_list<DType> types, std::string* why) {
    for (DType t : types) {
      if (t != DType::BF16) return fail("cuDNN's fused attention is used for bf16 activations only", why);
    }
    return true;
  }

  // Fills the ragged layout when the documents are packed, then executes. A graph that built but fails to run is a
  // device error: falling back now would leave the forward and the backward with different statistics layouts.
  void run(Backend& be, const BuiltGraph& g, std::unordered_map<int64_t, void*>& pack, const DocumentSpans& docs,
           const Sequences& s, int64_t H, int64_t KVH, int64_t D) {
    Buffer seq_len, q_offsets, kv_offsets;
    if (s.ragged) {
      seq_len = be.alloc(size_t(s.count) * 4, "attention scores");
      q_offsets = be.alloc(size_t(s.count + 1) * 8, "attention scores");
      kv_offsets = be.alloc(size_t(s.count + 1) * 8, "attention scores");
      launch_elementwise(DocumentLayout{docs.start, seq_len.i32(), static_cast<int64_t*>(q_offsets.get()),
                                        static_cast<int64_t*>(kv_offsets.get()), docs.count, s.count, H * D, KVH * D},
                         s.count + 1, stream_);
      pack[kSeqLen] = seq_len.get();
      pack[kQOffsets] = q_offsets.get();
      pack[kKVOffsets] = kv_offsets.get();
    }
    Buffer workspace = be.alloc(size_t(std::max<int64_t>(g.workspace, 1)), "attention scores");
    fe::error_t e = g.graph->execute(handle_, pack, workspace.get());
    if (e.is_bad()) throw DeviceError("cuDNN SDPA execute: " + e.get_message());
  }

  // The forward or backward graph of a shape; cuDNN serves a shape only when it has plans for both directions, so
  // that the forward and the backward always agree on who wrote the statistics.
  const BuiltGraph* graphs(const GraphKey& key, bool backward, std::string* why) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) it = graphs_.emplace(key, std::make_pair(build(key, false), build(key, true))).first;
    const auto& [fwd, bwd] = it->second;
    if (!fwd.graph || !bwd.graph) {
      *why = !fwd.graph ? fwd.why : bwd.why;
      return nullptr;
    }
    return backward ? &bwd : &fwd;
  }

  BuiltGraph build(const GraphKey& k, bool backward) const {
    BuiltGraph out;
    try {
      auto g = std::make_shared<fe::graph::Graph>();
      g->set_io_data_type(fe::DataType_t::BFLOAT16)
          .set_intermediate_data_type(fe::DataType_t::FLOAT)
          .set_compute_data_type(fe::DataType_t::FLOAT);
      const int64_t b = k.b, s = k.s, D = k.D;
      std::shared_ptr<fe::graph::Tensor_attributes> seq_len, q_offsets, kv_offsets;
      if (k.ragged) {
        auto index = [&](const char* name, int64_t uid, int64_t n, fe::DataType_t type) {
          return g->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({n, 1, 1, 1})
                               .set_stride({1, 1, 1, 1}).set_data_type(type));
        };
        seq_len = index("seq_len", kSeqLen, b, fe::DataType_t::INT32);
        q_offsets = index("q_offsets", kQOffsets, b + 1, fe::DataType_t::INT64);
        kv_offsets = index("kv_offsets", kKVOffsets, b + 1, fe::DataType_t::INT64);
      }
      // (b, heads, s, D) over token-major memory; ragged: each sequence starts at its offset.
      auto shaped = [&](fe::graph::Tensor_attributes& t, int64_t heads, bool q_like) -> fe::graph::Tensor_attributes& {
        t.set_dim({b, heads, s, D}).set_stride({s * heads * D, D, heads * D, 1});
        if (k.ragged) t.set_ragged_offset(q_like ? q_offsets : kv_offsets);
        return t;
      };
      auto input = [&](const char* name, int64_t uid, int64_t heads, bool q_like) {
        fe::graph::Tensor_attributes t;
        t.set_name(name).set_uid(uid);
        return g->tensor(shaped(t, heads, q_like));
      };
      const float scale = 1.0f / std::sqrt(float(D));
      auto q = input("q", kQ, k.H, true), kk = input("k", kK, k.KVH, false), v = input("v", kV, k.KVH, false);
      // Stats stay padded per sequence, (b, H, s, 1), whether or not the sequences are ragged.
      auto stats_layout = [&](fe::graph::Tensor_attributes& t) -> fe::graph::Tensor_attributes& {
        return t.set_dim({b, k.H, s, 1}).set_stride({k.H * s, s, 1, 1}).set_data_type(fe::DataType_t::FLOAT);
      };
      if (!backward) {
        auto opts = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_causal_mask(true)
                        .set_attn_scale(scale);
        if (k.ragged) opts.set_padding_mask(true).set_seq_len_q(seq_len).set_seq_len_kv(seq_len);
        auto [o, stats] = g->sdpa(q, kk, v, opts);
        shaped(o->set_output(true).set_uid(kO), k.H, true);
        stats_layout(stats->set_output(true).set_uid(kStats));
      } else {
        auto o = input("o", kO, k.H, true), dout = input("dout", kDO, k.H, true);
        fe::graph::Tensor_attributes st;
        st.set_name("stats").set_uid(kStats);
        auto stats = g->tensor(stats_layout(st));
        auto opts = fe::graph::SDPA_backward_attributes().set_name("sdpa_backward").set_causal_mask(true)
                        .set_attn_scale(scale);
        if (k.ragged) opts.set_padding_mask(true).set_seq_len_q(seq_len).set_seq_len_kv(seq_len);
        auto [dq, dk, dv] = g->sdpa_backward(q, kk, v, o, dout, stats, opts);
        shaped(dq->set_output(true).set_uid(kDQ), k.H, true);
        shaped(dk->set_output(true).set_uid(kDK), k.KVH, false);
        shaped(dv->set_output(true).set_uid(kDV), k.KVH, false);
      }
      for (fe::error_t e : {g->validate(), g->build_operation_graph(handle_),
                                  g->create_execution_plans({fe::HeurMode_t::A}), g->check_support(handle_),
                                  g->build_plans(handle_)}) {
        if (e.is_bad()) {
          out.why = "cuDNN has no SDPA plan for this shape: " + e.get_message();
          return out;
        }
      }
      if (g->get_workspace_size(out.workspace).is_bad()) out.workspace = 0;
      out.graph = g;
    } catch (const std::exception& e) {
      out.why = std::string("cuDNN SDPA graph: ") + e.what();
    }
    return out;
  }

  cudaStream_t stream_;
  cudnnHandle_t handle_;
  std::map<GraphKey, std::pair<BuiltGraph, BuiltGraph>> graphs_;  // forward, backward
};

}  // namespace

std::unique_ptr<CudnnAttention> CudnnAttention::open(cudaStream_t stream, std::string* why) {
  if (!fe::cudnn_dlhandle) {
    const char* named = std::getenv("QFT_CUDNN_LIBRARY");
    const std::string lib = named && *named ? named : "libcudnn.so.9";
    fe::cudnn_dlhandle = dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!fe::cudnn_dlhandle) {
      const char* e = dlerror();
      *why = "cannot load " + lib + " (" + (e ? e : "?") + "); set QFT_CUDNN_LIBRARY to its path";
      return nullptr;
    }
  }
  try {
    cudnnHandle_t handle = nullptr;
    if (fe::detail::create_handle(&handle) != CUDNN_STATUS_SUCCESS) {
      *why = "cudnnCreate failed";
      return nullptr;
    }
    fe::detail::set_stream(handle, stream);
    return std::make_unique<CudnnSdpa>(stream, handle);
  } catch (const std::exception& e) {  // a symbol the frontend needs is missing from this libcudnn
    *why = std::string("libcudnn is unusable: ") + e.what();
    return nullptr;
  }
}

}  // namespace qft::cuda

#else  // built without the cuDNN frontend headers

namespace qft::cuda {

std::unique_ptr<CudnnAttention> CudnnAttention::open(cudaStream_t, std::string* why) {
  *why = "qft was built without the cuDNN frontend headers (scripts/setup.sh installs them)";
  return nullptr;
}

}  // namespace qft::cuda

#endif
