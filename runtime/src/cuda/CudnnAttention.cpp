// cuDNN fused SDPA through the cuDNN frontend graph API (see CudnnAttention.h).
// Compiled with NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING: the frontend calls cuDNN
// through `cudnn_frontend::cudnn_dlhandle`, which loadCudnn() fills with dlopen,
// so nothing links libcudnn and a machine without it runs our own kernels.
#include "CudnnAttention.h"

// The frontend's headers are not -Wall -Wextra clean (unused helpers).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <cudnn_frontend.h>
#pragma GCC diagnostic pop

#include <dlfcn.h>

#include <cstdlib>
#include <exception>
#include <mutex>
#include <unordered_map>

#ifndef LLMIR_CUDNN_DEFAULT_LIBRARY
#define LLMIR_CUDNN_DEFAULT_LIBRARY ""
#endif

namespace cudnn_frontend {
void *cudnn_dlhandle = nullptr; // the frontend's handle to libcudnn (dynamic loading)
} // namespace cudnn_frontend

namespace llmir::runtime::cuda {
namespace fe = cudnn_frontend;

namespace {

/// cuDNN's encoding since 9.0: 10000 * major + 100 * minor + patch.
std::string cudnnVersionString(int64_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." +
         std::to_string(v % 100);
}

struct Loaded {
  void *handle = nullptr;
  std::string whyNot;
};

/// dlopen's libcudnn.so.9 once: $LLMIR_CUDNN_LIBRARY if set, else the dynamic
/// linker's search (LD_LIBRARY_PATH, the system), else the build's wheel.
const Loaded &loadCudnn() {
  static const Loaded loaded = [] {
    Loaded l;
    std::string tried;
    auto attempt = [&](const std::string &name) {
      if (l.handle || name.empty())
        return;
      dlerror();
      l.handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!l.handle) {
        const char *err = dlerror();
        tried += (tried.empty() ? "" : "; ") + std::string(err ? err : name.c_str());
      }
    };
    if (const char *env = std::getenv("LLMIR_CUDNN_LIBRARY")) {
      attempt(env);
    } else {
      attempt("libcudnn.so.9");
      attempt(LLMIR_CUDNN_DEFAULT_LIBRARY);
    }
    if (!l.handle)
      l.whyNot = "libcudnn.so.9 not loaded (" + tried + ")";
    else if (!dlsym(l.handle, "cudnnGetVersion"))
      l.whyNot = "the loaded libcudnn has no cudnnGetVersion";
    if (l.whyNot.empty())
      fe::cudnn_dlhandle = l.handle;
    return l;
  }();
  return loaded;
}

Status unavailable(const std::string &why) {
  return Status::error(StatusCode::Unavailable, "cuDNN attention: " + why);
}

/// Tensor uids of the variant pack.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

std::shared_ptr<fe::graph::Tensor_attributes>
tensor(fe::graph::Graph &g, const char *name, Uid uid, const SdpaTensorLayout &l) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({l.dim.begin(), l.dim.end()})
                      .set_stride({l.stride.begin(), l.stride.end()}));
}

void setOutput(const std::shared_ptr<fe::graph::Tensor_attributes> &t, Uid uid,
               const SdpaTensorLayout &l) {
  t->set_output(true).set_uid(uid).set_dim({l.dim.begin(), l.dim.end()}).set_stride(
      {l.stride.begin(), l.stride.end()});
}

/// The SDPA graph of `s` (not yet built).
std::shared_ptr<fe::graph::Graph> describe(const SdpaShape &s) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(s.f16 ? fe::DataType_t::HALF : fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  const SdpaTensorLayout ql = sdpaTokenMajor(s.batch, s.seq, s.heads, s.headDim);
  const SdpaTensorLayout kl = sdpaTokenMajor(s.batch, s.seq, s.kvHeads, s.headDim);
  const SdpaTensorLayout sl = sdpaStats(s.batch, s.heads, s.seq);
  auto q = tensor(*g, "Q", kQ, ql), k = tensor(*g, "K", kK, kl), v = tensor(*g, "V", kV, kl);
  if (!s.backward) {
    auto options = fe::graph::SDPA_attributes()
                       .set_name("llmir_sdpa")
                       .set_generate_stats(s.stats)
                       .set_attn_scale(s.scale)
                       .set_causal_mask(s.causal);
    auto [o, stats] = g->sdpa(q, k, v, options);
    setOutput(o, kO, ql);
    if (s.stats) {
      setOutput(stats, kStats, sl);
      stats->set_data_type(fe::DataType_t::FLOAT);
    }
    return g;
  }
  auto o = tensor(*g, "O", kO, ql), dO = tensor(*g, "dO", kDO, ql);
  auto stats = tensor(*g, "Stats", kStats, sl);
  stats->set_data_type(fe::DataType_t::FLOAT);
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("llmir_sdpa_backward")
                     .set_attn_scale(s.scale)
                     .set_causal_mask(s.causal);
  auto [dQ, dK, dV] = g->sdpa_backward(q, k, v, o, dO, stats, options);
  setOutput(dQ, kDQ, ql);
  setOutput(dK, kDK, kl);
  setOutput(dV, kDV, kl);
  return g;
}

} // namespace

std::string SdpaShape::str() const {
  return std::string(backward ? "backward" : "forward") + " " + (f16 ? "f16" : "bf16") +
         " batch " + std::to_string(batch) + " seq " + std::to_string(seq) + " heads " +
         std::to_string(heads) + "/" + std::to_string(kvHeads) + " head_dim " +
         std::to_string(headDim) + (causal ? " causal" : "");
}

SdpaTensorLayout sdpaTokenMajor(int64_t batch, int64_t seq, int64_t heads, int64_t headDim) {
  return {{batch, heads, seq, headDim}, {seq * heads * headDim, headDim, heads * headDim, 1}};
}

SdpaTensorLayout sdpaStats(int64_t batch, int64_t heads, int64_t seq) {
  return {{batch, heads, seq, 1}, {heads * seq, seq, 1, 1}};
}

std::string sdpaUnsupportedReason(const SdpaShape &s) {
  if (s.batch <= 0 || s.seq <= 0 || s.heads <= 0 || s.kvHeads <= 0 || s.headDim <= 0)
    return "empty shape";
  if (s.heads % s.kvHeads != 0)
    return "heads not a multiple of kv heads";
  // cuDNN's flash attention: head dims up to 256 in multiples of 8 (16-byte rows).
  if (s.headDim % 8 != 0 || s.headDim > 256)
    return "head_dim " + std::to_string(s.headDim) + " is not a multiple of 8 up to 256";
  return "";
}

CudnnVersions cudnnVersions() {
  CudnnVersions v;
  v.built = cudnnVersionString(CUDNN_VERSION);
  v.frontend = std::to_string(CUDNN_FRONTEND_MAJOR_VERSION) + "." +
               std::to_string(CUDNN_FRONTEND_MINOR_VERSION) + "." +
               std::to_string(CUDNN_FRONTEND_PATCH_VERSION);
  const Loaded &l = loadCudnn();
  if (!l.whyNot.empty()) {
    v.whyNot = l.whyNot;
    return v;
  }
  using GetVersion = size_t (*)();
  auto get = reinterpret_cast<GetVersion>(dlsym(l.handle, "cudnnGetVersion"));
  v.loaded = cudnnVersionString(static_cast<int64_t>(get()));
  return v;
}

struct CudnnAttention::Impl {
  cudnnHandle_t handle = nullptr;
  struct Entry {
    std::shared_ptr<fe::graph::Graph> graph; ///< null: unsupported
    int64_t workspace = 0;
    std::string whyNot;
  };
  std::map<SdpaShape, Entry> graphs;

  ~Impl() {
    if (handle)
      fe::detail::destroy_handle(handle);
  }

  Status run(const SdpaShape &s, std::unordered_map<int64_t, void *> pack, void *workspace) {
    auto it = graphs.find(s);
    if (it == graphs.end() || !it->second.graph)
      return Status::error(StatusCode::Internal,
                           "cuDNN attention: " + s.str() + " was not prepared");
    try {
      fe::error_t err = it->second.graph->execute(handle, pack, workspace);
      if (err.is_bad())
        return Status::error(StatusCode::DeviceError,
                             "cuDNN attention: " + s.str() + ": " + err.get_message());
    } catch (const std::exception &e) {
      return Status::error(StatusCode::DeviceError,
                           "cuDNN attention: " + s.str() + ": " + e.what());
    }
    return Status::ok();
  }
};

CudnnAttention::CudnnAttention(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudnnAttention::~CudnnAttention() = default;

StatusOr<std::unique_ptr<CudnnAttention>> CudnnAttention::create(cudaStream_t stream) {
  const Loaded &l = loadCudnn();
  if (!l.whyNot.empty())
    return unavailable(l.whyNot);
  auto impl = std::make_unique<Impl>();
  try {
    cudnnStatus_t st = fe::detail::create_handle(&impl->handle);
    if (st != CUDNN_STATUS_SUCCESS) {
      impl->handle = nullptr;
      return unavailable(std::string("cudnnCreate: ") + fe::detail::get_error_string(st));
    }
    st = fe::detail::set_stream(impl->handle, stream);
    if (st != CUDNN_STATUS_SUCCESS)
      return unavailable(std::string("cudnnSetStream: ") + fe::detail::get_error_string(st));
  } catch (const std::exception &e) {
    return unavailable(e.what());
  }
  return std::unique_ptr<CudnnAttention>(new CudnnAttention(std::move(impl)));
}

StatusOr<int64_t> CudnnAttention::prepare(const SdpaShape &s) {
  auto it = impl_->graphs.find(s);
  if (it == impl_->graphs.end()) {
    Impl::Entry e;
    e.whyNot = sdpaUnsupportedReason(s);
    if (e.whyNot.empty()) {
      try {
        auto g = describe(s);
        fe::error_t err = g->build(impl_->handle, {fe::HeurMode_t::A});
        if (err.is_good())
          err = g->get_workspace_size(e.workspace);
        if (err.is_good())
          e.graph = std::move(g);
        else
          e.whyNot = err.get_message();
      } catch (const std::exception &ex) {
        e.whyNot = ex.what();
      }
    }
    it = impl_->graphs.emplace(s, std::move(e)).first;
  }
  if (!it->second.graph)
    return Status::error(StatusCode::Unimplemented,
                         "cuDNN SDPA does not support " + s.str() + ": " + it->second.whyNot);
  return it->second.workspace;
}

Status CudnnAttention::forward(const SdpaShape &s, const void *q, const void *k,
                               const void *v, void *o, float *stats, void *workspace) {
  std::unordered_map<int64_t, void *> pack = {{kQ, const_cast<void *>(q)},
                                              {kK, const_cast<void *>(k)},
                                              {kV, const_cast<void *>(v)},
                                              {kO, o}};
  if (s.stats)
    pack[kStats] = stats;
  return impl_->run(s, std::move(pack), workspace);
}

Status CudnnAttention::backward(const SdpaShape &s, const void *q, const void *k,
                                const void *v, const void *o, const void *dO,
                                const float *stats, void *dq, void *dk, void *dv,
                                void *workspace) {
  std::unordered_map<int64_t, void *> pack = {
      {kQ, const_cast<void *>(q)},   {kK, const_cast<void *>(k)},
      {kV, const_cast<void *>(v)},   {kO, const_cast<void *>(o)},
      {kDO, const_cast<void *>(dO)}, {kStats, const_cast<float *>(stats)},
      {kDQ, dq},                     {kDK, dk},
      {kDV, dv}};
  return impl_->run(s, std::move(pack), workspace);
}

} // namespace llmir::runtime::cuda
