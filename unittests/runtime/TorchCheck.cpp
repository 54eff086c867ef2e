// Compares the CPU kernels against PyTorch outputs written by torch_oracle.py (RoPE, GQA attention
// forward/backward, cross-entropy, activations, AdamW). Usage: llmir_runtime_torch_check DIR.
#include "llmir/runtime/Kernels.h"
#include "llmir/runtime/Npy.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace rt = llmir::runtime;

namespace {

std::string dir;
int failures = 0;

std::vector<float> loadF32(const std::string &name) {
  auto a = rt::readNpy(dir + "/" + name + ".npy");
  if (!a.isOk()) {
    std::fprintf(stderr, "%s\n", a.status().toString().c_str());
    ++failures;
    return {};
  }
  auto v = a->toFloat32();
  if (!v.isOk()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), v.status().toString().c_str());
    ++failures;
    return {};
  }
  return *v;
}

std::vector<int64_t> loadI64(const std::string &name) {
  auto a = rt::readNpy(dir + "/" + name + ".npy");
  if (!a.isOk() || !a->toInt64().isOk()) {
    std::fprintf(stderr, "cannot read %s\n", name.c_str());
    ++failures;
    return {};
  }
  return *a->toInt64();
}

void ok(const rt::Status &st, const char *what) {
  if (!st.isOk()) {
    std::fprintf(stderr, "%s: %s\n", what, st.toString().c_str());
    ++failures;
  }
}

/// |got - want| <= atol + rtol |want| everywhere.
void compare(const char *what, const std::vector<float> &got, const std::vector<float> &want,
             double rtol = 1e-5, double atol = 1e-6) {
  if (got.size() != want.size() || got.empty()) {
    std::printf("FAIL %-22s size %zu vs %zu\n", what, got.size(), want.size());
    ++failures;
    return;
  }
  double maxAbs = 0, maxRel = 0;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    maxAbs = std::max(maxAbs, d);
    if (want[i] != 0)
      maxRel = std::max(maxRel, d / std::fabs(double(want[i])));
    if (!(d <= atol + rtol * std::fabs(double(want[i]))))
      ++bad;
  }
  std::printf("%s %-22s n=%-6zu max abs %.2e, max rel %.2e\n", bad ? "FAIL" : "ok  ", what,
              got.size(), maxAbs, maxRel);
  if (bad)
    ++failures;
}

void checkRope() {
  const int64_t B = 2, S = 37, H = 3, D = 16;
  auto x = loadF32("rope_x");
  struct Case { const char *name; double theta; int64_t offset; };
  for (Case c : {Case{"rope_y_a", 10000.0, 0}, Case{"rope_y_b", 10000.0, 100},
                 Case{"rope_y_c", 500000.0, 7}}) {
    std::vector<float> y(x.size());
    ok(rt::ropeForward(x.data(), y.data(), B, S, H, D, c.theta, c.offset), c.name);
    compare(c.name, y, loadF32(c.name));
  }
}

void checkAttention() {
  const int64_t B = 2, S = 19, H = 6, HKV = 2, D = 8;
  auto q = loadF32("attn_q"), k = loadF32("attn_k"), v = loadF32("attn_v");
  auto dout = loadF32("attn_dout");
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<float> out(q.size()), lse(B * H * S);
  ok(rt::attentionForward(q.data(), k.data(), v.data(), out.data(), B, S, H, HKV, D, scale, true,
                          lse.data()),
     "attention_forward");
  compare("attention out", out, loadF32("attn_out"));
  compare("attention lse", lse, loadF32("attn_lse"));
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  ok(rt::attentionBackward(q.data(), k.data(), v.data(), {out.data(), lse.data()}, dout.data(),
                           dq.data(), dk.data(), dv.data(), B, S, H, HKV, D, scale, true),
     "attention_backward");
  // Gradients sum over more terms in a different order than torch: 1e-5 abs.
  compare("attention dq", dq, loadF32("attn_dq"), 1e-5, 1e-5);
  compare("attention dk", dk, loadF32("attn_dk"), 1e-5, 1e-5);
  compare("attention dv", dv, loadF32("attn_dv"), 1e-5, 1e-5);
}

void checkCrossEntropy() {
  const int64_t rows = 23, vocab = 517;
  auto logits = loadF32("ce_logits");
  auto labels = loadI64("ce_labels");
  float loss = 0;
  std::vector<float> lse(rows), dlogits(logits.size());
  ok(rt::crossEntropyForward(logits.data(), labels.data(), rows, vocab, &loss, nullptr, lse.data()),
     "cross_entropy_forward");
  compare("cross-entropy loss", {loss}, loadF32("ce_loss"));
  ok(rt::crossEntropyBackward(logits.data(), labels.data(), lse.data(), 1.0f, dlogits.data(), rows,
                              vocab, 0),
     "cross_entropy_backward");
  compare("cross-entropy dlogits", dlogits, loadF32("ce_dlogits"));
}

void checkActivations() {
  auto x = loadF32("act_x");
  std::vector<float> y(x.size());
  ok(rt::geluTanhForward(x.data(), y.data(), x.size()), "gelu_tanh");
  compare("gelu tanh", y, loadF32("act_gelu_tanh"));
  ok(rt::geluExactForward(x.data(), y.data(), x.size()), "gelu");
  compare("gelu exact", y, loadF32("act_gelu"));
  ok(rt::siluForward(x.data(), y.data(), x.size()), "silu");
  compare("silu", y, loadF32("act_silu"));
}

void checkAdamW() {
  auto p = loadF32("adamw_p0");
  auto grads = loadF32("adamw_grads"), params = loadF32("adamw_params");
  const size_t n = p.size();
  if (n == 0 || grads.size() != 3 * n || params.size() != 3 * n) {
    ++failures;
    return;
  }
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  for (int step = 1; step <= 3; ++step) {
    ok(rt::adamwUpdate(p.data(), grads.data() + (step - 1) * n, m.data(), v.data(), n, 1e-2f,
                       0.9f, 0.95f, 1e-8f, 0.1f, step),
       "adamw_update");
    const std::string what = "adamw step " + std::to_string(step);
    compare(what.c_str(), p,
            std::vector<float>(params.begin() + (step - 1) * n, params.begin() + step * n));
  }
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (written by torch_oracle.py)\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  checkRope();
  checkAttention();
  checkCrossEntropy();
  checkActivations();
  checkAdamW();
  std::printf("%s: %d failed comparisons\n", failures ? "FAILED" : "ALL OK", failures);
  return failures ? 1 : 0;
}
