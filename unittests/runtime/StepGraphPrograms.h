// A small training program for the step-graph tests (StepGraphTest.cpp on a
// recording CPU backend, CudaGraphTest.cpp on the GPU), and its training loop.
#ifndef LLMIR_UNITTESTS_RUNTIME_STEPGRAPHPROGRAMS_H
#define LLMIR_UNITTESTS_RUNTIME_STEPGRAPHPROGRAMS_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Executor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace llmir::runtime::testing {

namespace rt = llmir::runtime;

inline rt::Instr kernel(const char *name, std::vector<rt::BufferRef> ins,
                        std::vector<rt::BufferRef> outs) {
  rt::Instr in;
  in.kind = rt::OpKind::Kernel;
  in.kernel = name;
  in.id = *rt::kernelIdFromName(name);
  in.ins = std::move(ins);
  in.outs = std::move(outs);
  return in;
}

inline void setFloat(rt::Instr &in, const char *name, double v) {
  in.attrs[name].kind = rt::AttrValue::Kind::Float;
  in.attrs[name].f = v;
}

/// One rank: grad = 0.5 everywhere (fill), then AdamW on a 4-float parameter
/// with decay; the output "param" is the parameter.
inline rt::Program adamwProgram() {
  rt::Program p;
  p.plan.globalBatch = p.plan.seq = 1;
  p.ranks.push_back({0, 0, {}});
  rt::StageProgram s;
  s.arenaBytes = 256;
  const rt::BufferRef grad{0, rt::ScalarType::F32, {4}}, param{64, rt::ScalarType::F32, {4}},
      m{128, rt::ScalarType::F32, {4}}, v{192, rt::ScalarType::F32, {4}};
  rt::Instr fill = kernel("fill", {}, {grad});
  setFloat(fill, "value", 0.5);
  s.instrs.push_back(fill);
  rt::Instr adamw = kernel("adamw", {grad}, {param, m, v});
  setFloat(adamw, "beta1", 0.9);
  setFloat(adamw, "beta2", 0.95);
  setFloat(adamw, "eps", 1e-8);
  adamw.attrs["decay"].kind = rt::AttrValue::Kind::Bool;
  adamw.attrs["decay"].i = 1;
  s.instrs.push_back(adamw);
  s.outputs.push_back({"param", param});
  p.stages.push_back(std::move(s));
  return p;
}

/// The parameter after `steps` steps whose learning rate changes every step
/// (`notes`: the executor's graph notes; `graphs`: setStepGraphs).
inline std::vector<float> train(rt::Backend &backend, int steps, std::vector<std::string> *notes,
                                bool graphs = true) {
  const rt::Program p = adamwProgram();
  auto exec = rt::Executor::create(p, 0, nullptr, backend);
  EXPECT_TRUE(exec.isOk()) << exec.status().toString();
  if (!exec.isOk())
    return {};
  (*exec)->setStepGraphs(graphs);
  for (int step = 0; step < steps; ++step) {
    (*exec)->setOptimizer(1e-2f * static_cast<float>(step + 1), 0.1f);
    rt::Status st = (*exec)->run(step);
    EXPECT_TRUE(st.isOk()) << st.toString();
    if (std::string note = (*exec)->takeGraphNote(); notes && !note.empty())
      notes->push_back(note);
  }
  return *(*exec)->output("param");
}

} // namespace llmir::runtime::testing

#endif // LLMIR_UNITTESTS_RUNTIME_STEPGRAPHPROGRAMS_H
