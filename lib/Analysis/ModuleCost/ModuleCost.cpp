//===- ModuleCost.cpp - a module's model, plan and cluster for the cost model ===//

#include "llmir/Analysis/ModuleCost.h"

#include <optional>

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace mlir;
using namespace llmir;

FailureOr<cost::TransformerConfig>
llmir::readModelConfig(ModuleOp module, StringRef pass, std::string *dtype) {
  auto model =
      module->getAttrOfType<DictionaryAttr>(tfm::TfmDialect::kModelAttrName);
  if (!model)
    return module.emitError()
           << "--" << pass << ": the module has no '"
           << tfm::TfmDialect::kModelAttrName
           << "' attribute (import the model with llm-translate "
              "--import-hf-config)";
  cost::TransformerConfig c;
  auto integer = [&](StringRef key, int64_t &field) -> LogicalResult {
    auto v = model.getAs<IntegerAttr>(key);
    if (!v || v.getInt() < 1)
      return module.emitError() << "--" << pass << ": tfm.model lacks a "
                                << "positive '" << key << "'";
    field = v.getInt();
    return success();
  };
  if (failed(integer("num_layers", c.layers)) ||
      failed(integer("hidden_size", c.hidden)) ||
      failed(integer("num_heads", c.heads)) ||
      failed(integer("num_kv_heads", c.kvHeads)) ||
      failed(integer("head_dim", c.headDim)) ||
      failed(integer("ffn_hidden_size", c.ffn)) ||
      failed(integer("vocab_size", c.vocab)) ||
      failed(integer("batch", c.globalBatch)) ||
      failed(integer("seq", c.seq)))
    return failure();
  if (auto p = model.getAs<IntegerAttr>("max_positions"))
    c.maxPositions = p.getInt();
  auto type = model.getAs<StringAttr>("model_type");
  if (!type || (type.getValue() != "gpt2" && type.getValue() != "llama"))
    return module.emitError() << "--" << pass
                              << ": tfm.model model_type must be gpt2 or llama";
  c.type = type.getValue().str();
  if (auto tied = model.getAs<BoolAttr>("tie_word_embeddings"))
    c.tiedEmbeddings = tied.getValue();
  if (c.learnedPositions() && c.maxPositions < 1)
    c.maxPositions = c.seq;
  if (std::optional<std::string> what = cost::findOverflowingSize(c))
    return module.emitError() << "--" << pass << ": the tfm.model sizes overflow "
                              << "64-bit arithmetic (" << *what << ")";
  *dtype = "f32";
  if (tfm::getMixedPrecision(module)) {
    // --llm-mixed-precision: f32 masters, compute-typed activations.
    *dtype = "mixed";
    return c;
  }
  for (func::FuncOp func : modelFunctions(module)) {
    for (BlockArgument arg : func.getArguments())
      if (func.getArgAttr(arg.getArgNumber(), tfm::TfmDialect::kParamAttrName))
        if (auto t = dyn_cast<RankedTensorType>(arg.getType())) {
          Type e = t.getElementType();
          *dtype = e.isBF16() ? "bf16" : e.isF16() ? "f16" : "f32";
          return c;
        }
  }
  return c;
}

FailureOr<cost::Layout> llmir::readPlanLayout(ModuleOp module, StringRef pass) {
  FailureOr<tfm::PlanAttr> plan = readPlan(module, pass);
  if (failed(plan))
    return failure();
  if (!*plan)
    return cost::Layout(); // one rank
  llvm::Expected<cost::Layout> layout = toCostLayout(*plan);
  if (!layout)
    return module.emitError() << "--" << pass << ": "
                              << llvm::toString(layout.takeError());
  return std::move(*layout);
}

llvm::Expected<cost::Layout> llmir::toCostLayout(tfm::PlanAttr plan) {
  cost::Layout l;
  l.dp = plan.axisSize("dp");
  l.cp = plan.axisSize("cp");
  l.tp = plan.axisSize("tp");
  l.pp = plan.axisSize("pp");
  l.microbatches = plan.getMicrobatches();
  l.schedule = plan.getSchedule().str();
  l.vpp = l.pp > 1 ? cost::chunksPerRank(l.schedule, plan.getVpp()) : 1;
  l.recompute = plan.getRecompute().str();
  l.sp = plan.getSp();
  l.zero = plan.getZero();
  l.reshardAfterForward = plan.getReshardAfterForward();
  if (!plan.getLayout().empty()) {
    auto stages = cost::parseStageLayers(plan.getLayout());
    if (!stages)
      return stages.takeError();
    l.stageLayers = std::move(*stages);
  }
  return l;
}

FailureOr<cost::Cluster> llmir::buildCluster(ModuleOp module, StringRef pass,
                                             const ClusterSpec &spec) {
  auto error = [&](const Twine &msg) {
    return module.emitError() << "--" << pass << ": " << msg;
  };
  cost::Cluster cluster;
  bool haveDevice = false;
  if (!spec.clusterFile.empty()) {
    auto buffer = llvm::MemoryBuffer::getFile(spec.clusterFile, true);
    if (!buffer)
      return error("cannot read cluster file '" + spec.clusterFile +
                   "': " + buffer.getError().message());
    auto parsed = cost::parseClusterJSON((*buffer)->getBuffer());
    if (!parsed)
      return error(spec.clusterFile + ": " + llvm::toString(parsed.takeError()));
    cluster = *parsed;
    haveDevice = true;
  }
  // `cluster=` spec: key=value items separated by commas or spaces.
  std::string normalized = spec.cluster;
  for (char &ch : normalized)
    if (ch == ',' || ch == '\'' || ch == '"')
      ch = ' ';
  SmallVector<StringRef> parts;
  StringRef(normalized).split(parts, ' ', -1, /*KeepEmpty=*/false);
  std::string gpu, intra, inter;
  int64_t nodes = 0, gpn = 0;
  for (StringRef part : parts) {
    auto [key, value] = part.split('=');
    if (value.empty() && !part.contains('=')) {
      gpu = key.str(); // a bare preset name: `cluster=cpu`
      continue;
    }
    int64_t n = 0;
    if (key == "nodes" || key == "gpus-per-node" || key == "ranks") {
      if (value.getAsInteger(10, n) || n < 1)
        return error("cluster: '" + key + "' needs a positive integer, found '" +
                     value + "'");
      (key == "nodes" ? nodes : gpn) = n;
    } else if (key == "gpu" || key == "device") {
      gpu = value.str();
    } else if (key == "intra") {
      intra = value.str();
    } else if (key == "inter") {
      inter = value.str();
    } else {
      return error("cluster: unknown key '" + key +
                   "' (nodes, gpus-per-node, ranks, gpu, intra, inter)");
    }
  }
  if (!spec.gpu.empty())
    gpu = spec.gpu;
  if (!spec.intra.empty())
    intra = spec.intra;
  if (!spec.inter.empty())
    inter = spec.inter;
  if (spec.nodes > 0)
    nodes = spec.nodes;
  if (spec.gpusPerNode > 0)
    gpn = spec.gpusPerNode;
  if (!gpu.empty() || !haveDevice) {
    auto device = cost::getDevicePreset(gpu.empty() ? "h100-80g" : gpu);
    if (!device)
      return error(llvm::toString(device.takeError()));
    cluster.device = *device;
    if (!haveDevice)
      cluster.gpusPerNode = cluster.device.name == "cpu" ? 1 : 8;
  }
  if (nodes > 0)
    cluster.nodes = nodes;
  if (gpn > 0)
    cluster.gpusPerNode = gpn;
  if (!intra.empty())
    if (auto err = cost::applyIntraLink(cluster.device, intra))
      return error(llvm::toString(std::move(err)));
  if (!inter.empty())
    if (auto err = cost::applyInterLink(cluster.device, inter))
      return error(llvm::toString(std::move(err)));
  return cluster;
}

FailureOr<cost::EstimateOptions>
llmir::styleOptions(ModuleOp module, StringRef pass, StringRef style,
                    StringRef dtype, bool onCpu, const cost::Layout &layout) {
  cost::EstimateOptions o;
  if (style == "auto")
    style = onCpu ? "llmir" : "megatron-flash";
  if (style == "llmir") {
    o.precision = dtype == "f32"     ? cost::fp32Precision()
                  : dtype == "mixed" ? cost::llmirMixedPrecision()
                                     : cost::bf16Precision();
    o.policy = cost::llmirActivations();
    // LLMIR's one-step train program keeps gradients as temporaries.
    o.persistentGrads = layout.pp > 1 || layout.microbatches > 1;
  } else if (style == "megatron" || style == "megatron-flash") {
    o.precision = cost::bf16Precision();
    o.policy = style == "megatron" ? cost::megatronActivations()
                                   : cost::llmirActivations();
    if (style == "megatron-flash") {
      o.policy.name = "megatron-flash";
      o.policy.keepsGatheredInputs = false;
    }
    o.persistentGrads = true;
  } else {
    return module.emitError() << "--" << pass << ": unknown style '" << style
                              << "' (auto, llmir, megatron, megatron-flash)";
  }
  return o;
}

llvm::Expected<cost::Layout> llmir::toCostLayout(const PartitionOptions &o) {
  cost::Layout l;
  l.dp = o.dp;
  l.cp = o.cp;
  l.tp = o.tp;
  l.pp = o.pp;
  l.vpp = o.vpp;
  l.microbatches = o.microbatches;
  l.schedule = o.schedule;
  l.recompute = o.recompute;
  l.sp = o.sp;
  l.zero = o.zero;
  l.reshardAfterForward = o.reshardAfterForward;
  if (!o.layout.empty()) {
    auto stages = cost::parseStageLayers(o.layout);
    if (!stages)
      return stages.takeError();
    l.stageLayers = std::move(*stages);
  }
  return l;
}

PartitionOptions llmir::toPartitionOptions(const cost::Layout &l) {
  PartitionOptions o;
  o.dp = l.dp;
  o.cp = l.cp;
  o.tp = l.tp;
  o.pp = l.pp;
  o.vpp = l.vpp;
  o.microbatches = l.microbatches;
  o.schedule = l.schedule;
  o.recompute = l.recompute;
  o.sp = l.sp;
  o.zero = l.zero;
  o.reshardAfterForward = l.reshardAfterForward;
  if (!l.stageLayers.empty())
    o.layout = cost::formatStageLayers(l.stageLayers);
  return o;
}

LogicalResult llmir::parseLayoutSpec(ModuleOp module, StringRef pass,
                                     StringRef spec, cost::Layout &l) {
  std::string normalized = spec.str();
  for (char &ch : normalized)
    if (ch == ',' || ch == '\'' || ch == '"')
      ch = ' ';
  SmallVector<StringRef> rawParts;
  StringRef(normalized).split(rawParts, ' ', -1, /*KeepEmpty=*/false);
  // A stage layout ("layout=E,t*3|t*4,L") has commas of its own: items
  // without '=' after it are its continuation.
  SmallVector<std::string> parts;
  for (StringRef part : rawParts) {
    if (!part.contains('=') && !parts.empty() &&
        StringRef(parts.back()).starts_with("layout="))
      parts.back() += "," + part.str();
    else
      parts.push_back(part.str());
  }
  std::optional<std::string> stageLayout;
  for (StringRef part : parts) {
    auto [key, value] = part.split('=');
    if (key == "layout") {
      stageLayout = value.str();
      continue;
    }
    int64_t *field = llvm::StringSwitch<int64_t *>(key)
                         .Case("dp", &l.dp)
                         .Case("cp", &l.cp)
                         .Case("tp", &l.tp)
                         .Case("pp", &l.pp)
                         .Case("vpp", &l.vpp)
                         .Case("microbatches", &l.microbatches)
                         .Case("zero", &l.zero)
                         .Default(nullptr);
    if (key == "pp" || key == "vpp")
      l.stageLayers.clear(); // the plan's stage layout no longer applies
    if (field) {
      if (value.getAsInteger(10, *field))
        return module.emitError() << "--" << pass << ": layout: '" << key
                                  << "' needs an integer, found '" << value
                                  << "'";
    } else if (key == "reshard-after-forward") {
      if (value != "true" && value != "false")
        return module.emitError() << "--" << pass
                                  << ": layout: reshard-after-forward needs "
                                     "true or false";
      l.reshardAfterForward = value == "true";
    } else if (key == "schedule") {
      l.schedule = value.str();
    } else if (key == "recompute") {
      l.recompute = value.str();
    } else if (key == "sp") {
      if (value != "true" && value != "false" && value != "1" && value != "0")
        return module.emitError() << "--" << pass
                                  << ": layout: sp needs true or false";
      l.sp = value == "true" || value == "1";
    } else {
      return module.emitError()
             << "--" << pass << ": layout: unknown key '" << key
             << "' (dp, cp, tp, pp, vpp, microbatches, schedule, recompute, "
                "sp, zero, layout)";
    }
  }
  // V schedules run two chunks per rank whatever vpp says (as --llm-partition).
  if (l.pp > 1)
    l.vpp = cost::chunksPerRank(l.schedule, l.vpp);
  if (stageLayout) {
    auto stages = cost::parseStageLayers(*stageLayout);
    if (!stages)
      return module.emitError() << "--" << pass << ": layout: "
                                << llvm::toString(stages.takeError());
    l.stageLayers = std::move(*stages);
  }
  return success();
}

LogicalResult llmir::readModelAndLayout(ModuleOp module, StringRef pass,
                                        StringRef layoutOption,
                                        cost::TransformerConfig &cfg,
                                        cost::Layout &layout, std::string *dtype) {
  FailureOr<cost::TransformerConfig> c = readModelConfig(module, pass, dtype);
  FailureOr<cost::Layout> l = readPlanLayout(module, pass);
  if (failed(c) || failed(l))
    return failure();
  if (!layoutOption.empty() &&
      failed(parseLayoutSpec(module, pass, layoutOption, *l)))
    return failure();
  cfg = *c;
  layout = *l;
  return success();
}
