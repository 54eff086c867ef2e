//===- PipelineSplit.cpp - --llm-pipeline-split ---------------------------===//
//
// Unrolls a verified pipeline schedule over one micro-batch's train step
// (@train_microbatch from --tfm-build-train-step) into one function per
// pipeline rank: the rank's actions in order, each a clone of its stage's
// forward or backward ops for one micro-batch, with explicit sends and
// receives where a value crosses stages; then the rank's optimizer.
//
// Values cross stages along "edges" (value, producer stage, consumer stage):
// the producer sends right after the action that computed it, the consumer
// receives right before the first action that reads it. A message's tag is
// microbatch * #edges + edge, so the pair (tag, peer) names it uniquely.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"
#include "llmir/Dialect/Tfm/Transforms/Optimizer.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"
#include "llmir/Dialect/Tfm/Transforms/ShardParameters.h"
#include "llmir/Partition/Passes.h"
#include "llmir/Partition/Pipeline/Schedule.h"
#include "llmir/Partition/Pipeline/Stages.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/BitVector.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/Support/MemoryBuffer.h"

#include <array>

namespace llmir {
#define GEN_PASS_DEF_LLMPIPELINESPLIT
#include "llmir/Partition/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
namespace pl = llmir::pipeline;

namespace {

constexpr StringLiteral kBackwardAttr = tfm::TfmDialect::kBackwardAttrName;
/// Message tags: activations/gradients below, tied-gradient exchange above.
constexpr int64_t kTiedTagBase = 12288, kMaxTag = 16384;

/// Forward, input-gradient and weight-gradient parts of a stage. A full
/// backward (action B) is I and W in program order.
enum Phase : int { kF = 0, kI = 1, kW = 2 };

struct Edge {
  Value value;
  int64_t from, to;     ///< virtual stages
  Phase fromPhase, toPhase;
};

/// Ops without operands (constants, position ids) are cloned where used
/// instead of being sent.
bool isFree(Operation *op) {
  return op->getNumOperands() == 0 && op->getNumRegions() == 0;
}

class Splitter {
public:
  /// `forwardOnly`: `mb` is a partitioned forward (evaluation or logits)
  /// whose results are summed (scalars: the loss) or concatenated along the
  /// batch (logits) over the micro-batches; no backward, no optimizer.
  /// `entry`: the name of an inference entry point (prefill, decode) being
  /// split; its per-rank functions become that entry of each stage.
  Splitter(ModuleOp module, func::FuncOp mb, pl::Schedule schedule,
           bool forwardOnly, StringRef entry = "")
      : module(module), mb(mb), schedule(std::move(schedule)),
        forwardOnly(forwardOnly), entry(entry.str()) {}

  LogicalResult run();

private:
  LogicalResult analyze();
  FailureOr<func::FuncOp> buildRank(int64_t rank);
  int64_t rankOf(int64_t stage) const { return schedule.rankOfStage(stage); }
  bool isInput(unsigned arg) {
    return static_cast<bool>(mb.getArgAttr(arg, tfm::TfmDialect::kInputAttrName));
  }
  /// Clones `op` into the rank function at `b`, cloning the free ops it
  /// reads first; tagged with its micro-batch `k` when the step has several.
  LogicalResult cloneOp(OpBuilder &b, Operation *op, IRMapping &map, int64_t k);

  ModuleOp module;
  func::FuncOp mb;
  pl::Schedule schedule;
  bool forwardOnly;
  std::string entry;
  int64_t numStages = 0, numMicrobatches = 0;

  DenseMap<Operation *, std::pair<int64_t, Phase>> where;
  /// Per stage: ops of each phase, and the whole backward in order.
  std::vector<std::array<SmallVector<Operation *>, 3>> ops;
  std::vector<SmallVector<Operation *>> backward;
  std::vector<Edge> edges;
  std::vector<std::array<SmallVector<unsigned>, 3>> incoming, outgoing;
  /// Results of @train_microbatch: 0 is the loss, then (param, stage) grads.
  SmallVector<int64_t> gradParam;
};

LogicalResult Splitter::analyze() {
  numStages = schedule.numStages();
  numMicrobatches = schedule.numMicrobatches;
  ops.resize(numStages);
  backward.resize(numStages);
  incoming.resize(numStages);
  outgoing.resize(numStages);
  Block &entry = mb.getBody().front();
  auto stageOf = [&](Operation *op) -> FailureOr<int64_t> {
    auto attr = op->getAttrOfType<IntegerAttr>(pl::kStageAttr);
    int64_t s = attr ? attr.getInt() : 0;
    if (s < 0 || s >= numStages)
      return op->emitOpError() << "is on stage " << s << " but the schedule has "
                               << numStages << " stages",
             failure();
    return s;
  };
  // Stage and phase of every op (backward ops are I until proven W).
  for (Operation &op : entry.without_terminator()) {
    if (isFree(&op))
      continue;
    if (op.getNumRegions())
      return op.emitOpError() << "has regions; --llm-pipeline-split expects a "
                                 "flat train step";
    FailureOr<int64_t> s = stageOf(&op);
    if (failed(s))
      return failure();
    bool isBackward = op.hasAttr(kBackwardAttr);
    where[&op] = {*s, isBackward ? kW : kF};
    if (isBackward)
      backward[*s].push_back(&op);
  }
  // Edges, keyed by (value, consumer stage); the consumer receives in the
  // first phase that reads the value.
  llvm::MapVector<std::pair<Value, int64_t>, unsigned> edgeOf;
  for (Operation &op : entry.without_terminator()) {
    auto it = where.find(&op);
    if (it == where.end())
      continue;
    int64_t to = it->second.first;
    for (Value v : op.getOperands()) {
      Operation *def = v.getDefiningOp();
      if (!def || isFree(def))
        continue;
      int64_t from = where.lookup(def).first;
      if (from == to)
        continue;
      auto [e, inserted] = edgeOf.try_emplace({v, to}, edges.size());
      if (inserted)
        edges.push_back({v, from, to, where.lookup(def).second, kW});
    }
  }
  // Input-gradient part of each stage: the backward ops its outgoing
  // gradients depend on (closed under dependencies, so W never feeds I).
  SmallVector<Operation *> worklist;
  for (const Edge &e : edges)
    if (where.lookup(e.value.getDefiningOp()).second != kF)
      worklist.push_back(e.value.getDefiningOp());
  while (!worklist.empty()) {
    Operation *op = worklist.pop_back_val();
    auto &w = where[op];
    if (w.second == kI)
      continue;
    w.second = kI;
    for (Value v : op->getOperands())
      if (Operation *def = v.getDefiningOp();
          def && !isFree(def) && where.count(def) &&
          where.lookup(def).first == w.first && where.lookup(def).second == kW)
        worklist.push_back(def);
  }
  for (Operation &op : entry.without_terminator())
    if (auto it = where.find(&op); it != where.end())
      ops[it->second.first][it->second.second].push_back(&op);
  // Phases of the edge ends, now that I and W are known.
  for (Edge &e : edges)
    e.fromPhase = where.lookup(e.value.getDefiningOp()).second;
  for (Operation &op : entry.without_terminator()) {
    auto it = where.find(&op);
    if (it == where.end())
      continue;
    for (Value v : op.getOperands()) {
      auto e = edgeOf.find({v, it->second.first});
      if (e != edgeOf.end())
        edges[e->second].toPhase =
            std::min(edges[e->second].toPhase, it->second.second);
    }
  }
  for (auto [i, e] : llvm::enumerate(edges)) {
    if (e.fromPhase == kF && e.toPhase == kF && e.from > e.to)
      return e.value.getDefiningOp()->emitOpError()
             << "on stage " << e.from << " feeds the forward of earlier stage "
             << e.to << "; pipeline stages must be in forward order";
    outgoing[e.from][e.fromPhase].push_back(i);
    incoming[e.to][e.toPhase].push_back(i);
  }
  if (static_cast<int64_t>(edges.size()) * numMicrobatches > kTiedTagBase)
    return mb.emitOpError() << edges.size() << " stage-crossing values x "
                            << numMicrobatches
                            << " micro-batches exceed the message tag space";
  // The results: the loss, then per-stage parameter gradients.
  for (unsigned i = 1; !forwardOnly && i < mb.getNumResults(); ++i) {
    auto param = mb.getResultAttrOfType<IntegerAttr>(i, "tfm.grad_of");
    if (!param)
      return mb.emitOpError() << "result #" << i
                              << " is not a parameter gradient (tfm.grad_of)";
    gradParam.push_back(param.getInt());
  }
  return success();
}

LogicalResult Splitter::cloneOp(OpBuilder &b, Operation *op, IRMapping &map,
                                int64_t k) {
  for (Value v : op->getOperands()) {
    if (map.contains(v))
      continue;
    Operation *def = v.getDefiningOp();
    if (!def || !isFree(def))
      return op->emitOpError()
             << "reads a value that is not available on its stage (internal "
                "error of --llm-pipeline-split)";
    b.clone(*def, map);
  }
  Operation *clone = b.clone(*op, map);
  if (numMicrobatches > 1)
    clone->setAttr(tfm::kMicrobatchAttrName, b.getI64IntegerAttr(k));
  return success();
}

FailureOr<func::FuncOp> Splitter::buildRank(int64_t rank) {
  OpBuilder b(mb);
  Location loc = mb.getLoc();
  int64_t m = numMicrobatches;
  // Inputs hold all the rank's micro-batches (the batch dim is m times the
  // micro-batch's); each action reads its micro-batch's slice.
  SmallVector<Type> argTypes;
  for (unsigned i = 0; i < mb.getNumArguments(); ++i) {
    auto type = cast<RankedTensorType>(mb.getArgument(i).getType());
    if (isInput(i) && type.getRank() > 0) {
      SmallVector<int64_t> shape(type.getShape());
      shape[0] *= m;
      type = RankedTensorType::get(shape, type.getElementType());
    }
    argTypes.push_back(type);
  }
  std::string name = "stage_" + std::to_string(rank);
  if (!entry.empty())
    name = entry + "_" + name;
  auto func = func::FuncOp::create(b, loc, name, b.getFunctionType(argTypes, {}));
  if (!entry.empty())
    func->setAttr("llmir.entry", b.getStringAttr(entry));
  func.setAllArgAttrs(mb.getAllArgAttrs());
  func->setAttr("llmir.pp_rank", b.getI64IntegerAttr(rank));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);

  std::vector<IRMapping> maps(m);
  for (unsigned i = 0; i < mb.getNumArguments(); ++i) {
    Value arg = entry->getArgument(i), orig = mb.getArgument(i);
    if (isInput(i) && m > 1 && cast<RankedTensorType>(orig.getType()).getRank() > 0) {
      SmallVector<Type> pieces(m, orig.getType());
      auto split = tfm::SplitOp::create(b, loc, pieces, arg, b.getI64IntegerAttr(0));
      for (int64_t k = 0; k < m; ++k)
        maps[k].map(orig, split.getResult(k));
    } else {
      for (int64_t k = 0; k < m; ++k)
        maps[k].map(orig, arg);
    }
  }

  auto ret = cast<func::ReturnOp>(mb.getBody().front().getTerminator());
  Value loss;
  // Forward only: each result per micro-batch.
  SmallVector<SmallVector<Value>> outputs(ret.getNumOperands());
  llvm::MapVector<int64_t, Value> grads; // param arg -> sum over micro-batches
  llvm::MapVector<int64_t, SmallVector<int64_t>> holders; // param -> ranks
  for (auto [i, param] : llvm::enumerate(gradParam)) {
    int64_t stage = where.lookup(ret.getOperand(i + 1).getDefiningOp()).first;
    auto &h = holders[param];
    if (!llvm::is_contained(h, rankOf(stage)))
      h.push_back(rankOf(stage));
  }
  auto add = [&](Value acc, Value v) {
    return acc ? tfm::AddOp::create(b, loc, acc, v).getResult() : v;
  };
  // The optimizer for this rank's parameters.
  tfm::OptimizerOptions options;
  if (auto bytes = mb->getAttrOfType<IntegerAttr>("llmir.bucket_bytes"))
    options.bucketBytes = bytes.getInt();
  if (auto dtype = mb->getAttrOfType<StringAttr>("llmir.grad_comm_dtype"))
    options.bf16Comm = dtype.getValue() == "bf16";
  options.gradNorm = mb->hasAttr("llmir.grad_norm");
  options.lossScaled = mb->hasAttr("llmir.loss_scaled");
  tfm::OptimizerBuilder optimizer(b, module, func, options);
  // zero=3 per micro-batch: parameters whose gradients are summed as chunks.
  llvm::DenseSet<int64_t> chunkedGrads;

  for (const pl::Action &action : schedule.ranks[rank]) {
    int64_t s = action.stage, k = action.microbatch;
    IRMapping &map = maps[k];
    SmallVector<Phase, 2> phases;
    switch (action.kind) {
    case pl::Action::F: phases = {kF}; break;
    case pl::Action::B: phases = {kI, kW}; break;
    case pl::Action::I: phases = {kI}; break;
    case pl::Action::W: phases = {kW}; break;
    }
    auto tag = [&](unsigned edge) {
      return b.getI64IntegerAttr(k * static_cast<int64_t>(edges.size()) + edge);
    };
    for (Phase p : phases)
      for (unsigned e : incoming[s][p]) {
        const Edge &edge = edges[e];
        if (map.contains(edge.value) || rankOf(edge.from) == rank)
          continue;
        auto recv = tfm::RecvOp::create(
            b, loc, edge.value.getType(),
            b.getI64IntegerAttr(rankOf(edge.from)), tag(e));
        map.map(edge.value, recv.getResult());
      }
    ArrayRef<Operation *> body = action.kind == pl::Action::B
                                     ? ArrayRef<Operation *>(backward[s])
                                     : ArrayRef<Operation *>(ops[s][phases[0]]);
    for (Operation *op : body)
      if (failed(cloneOp(b, op, map, k)))
        return failure();
    for (Phase p : phases)
      for (unsigned e : outgoing[s][p]) {
        const Edge &edge = edges[e];
        if (rankOf(edge.to) == rank)
          continue;
        tfm::SendOp::create(b, loc, map.lookup(edge.value),
                            b.getI64IntegerAttr(rankOf(edge.to)), tag(e));
      }
    // The micro-batch's loss and parameter gradients, once computed.
    for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
      auto w = where.lookup(ret.getOperand(i).getDefiningOp());
      if (w.first != s || !llvm::is_contained(phases, w.second))
        continue;
      Value v = map.lookup(ret.getOperand(i));
      if (forwardOnly)
        outputs[i].push_back(v);
      else if (i == 0)
        loss = add(loss, v);
      else {
        int64_t param = gradParam[i - 1];
        if (Value chunk = optimizer.reduceScatterMicrobatch(v, loc)) {
          v = chunk;
          chunkedGrads.insert(param);
        }
        grads[param] = add(grads.lookup(param), v);
      }
    }
  }

  // Tied parameters (e.g. the token embedding on the first and last stage):
  // every holder exchanges its gradient with each other holder (the lower
  // rank of a pair sends first, so the exchange cannot deadlock even with
  // blocking sends), then all sum them in rank order, so their copies of the
  // parameter stay bit-identical.
  int64_t tied = 0;
  for (auto &[param, ranks] : holders) {
    if (ranks.size() < 2)
      continue;
    llvm::sort(ranks);
    IntegerAttr tag = b.getI64IntegerAttr(kTiedTagBase + tied++);
    if (tag.getInt() >= kMaxTag)
      return mb.emitOpError() << "too many parameters shared across stages";
    if (!llvm::is_contained(ranks, rank))
      continue;
    Value mine = grads.lookup(param);
    DenseMap<int64_t, Value> parts;
    parts[rank] = mine;
    for (int64_t peer : ranks) {
      if (peer == rank)
        continue;
      auto send = [&] {
        tfm::SendOp::create(b, loc, mine, b.getI64IntegerAttr(peer), tag);
      };
      if (rank < peer)
        send();
      parts[peer] = tfm::RecvOp::create(b, loc, mine.getType(),
                                        b.getI64IntegerAttr(peer), tag);
      if (rank > peer)
        send();
    }
    Value sum;
    for (int64_t peer : ranks)
      sum = add(sum, parts.lookup(peer));
    grads[param] = sum;
  }

  SmallVector<std::pair<BlockArgument, Value>> updates;
  for (auto &[param, grad] : grads)
    updates.push_back({entry->getArgument(param), grad});
  // A tied parameter's gradient counts once in the norm: on its lowest holder.
  for (auto &[param, ranks] : holders)
    if (ranks.size() > 1 && llvm::is_contained(ranks, rank) &&
        ranks.front() != rank)
      optimizer.excludeFromNorm(entry->getArgument(param));
  for (auto &[param, grad] : updates)
    if (chunkedGrads.contains(param.getArgNumber()))
      optimizer.addReducedChunk(param, grad);
    else if (optimizer.bucketed())
      optimizer.addToBucket(param, grad, loc);
  if (optimizer.bucketed())
    optimizer.flushBucket(loc);
  if (failed(optimizer.emitUpdates(updates)))
    return failure();

  SmallVector<Value> results;
  if (loss)
    results.push_back(loss);
  for (SmallVector<Value> &pieces : outputs) {
    if (pieces.empty())
      continue; // computed on another rank
    auto type = cast<RankedTensorType>(pieces.front().getType());
    if (type.getRank() == 0 || pieces.size() == 1) {
      Value sum;
      for (Value v : pieces)
        sum = add(sum, v);
      results.push_back(sum);
      continue;
    }
    SmallVector<int64_t> shape(type.getShape());
    shape[0] *= pieces.size();
    results.push_back(tfm::ConcatOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), pieces,
        b.getI64IntegerAttr(0)));
  }
  func::ReturnOp::create(b, loc, results);
  func.setFunctionType(b.getFunctionType(argTypes, ValueRange(results).getTypes()));
  // Only what the rank's stages read stays an argument (a stage loads only
  // its own parameters and inputs).
  for (Operation &op : llvm::make_early_inc_range(*entry))
    if (isa<tfm::SplitOp>(op) && op.use_empty())
      op.erase();
  llvm::BitVector unused(func.getNumArguments());
  for (BlockArgument arg : entry->getArguments())
    if (arg.use_empty())
      unused.set(arg.getArgNumber());
  if (failed(func.eraseArguments(unused)))
    return failure();
  return func;
}

LogicalResult Splitter::run() {
  if (failed(analyze()))
    return failure();
  for (int64_t r = 0; r < schedule.numRanks; ++r) {
    FailureOr<func::FuncOp> rankFunc = buildRank(r);
    if (failed(rankFunc) ||
        failed(tfm::shardParametersOverDp(module, *rankFunc))) // zero=3 only
      return failure();
  }
  mb.erase();
  return success();
}

struct PipelineSplitPass
    : public llmir::impl::LLMPipelineSplitBase<PipelineSplitPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<tfm::PlanAttr> plan = readPlan(module, "llm-pipeline-split");
    if (failed(plan) || failed(tfm::applyMixedPrecision(module)))
      return signalPassFailure();
    auto mb = module.lookupSymbol<func::FuncOp>("train_microbatch");
    SmallVector<func::FuncOp> models;
    SmallVector<std::string> entryNames;
    if (!*plan || !plan->isPipelined())
      return; // nothing to pipeline
    bool forwardOnly = false;
    if (!mb) {
      // A partitioned forward (evaluation, logits): every micro-batch's F.
      // (or inference entry points over a KV cache: prefill, decode).
      models = modelFunctions(module);
      auto hasState = [](func::FuncOp f) {
        for (unsigned i = 0, e = f.getNumArguments(); i < e; ++i)
          if (f.getArgAttr(i, tfm::TfmDialect::kStateAttrName))
            return true;
        return false;
      };
      bool entries = !models.empty() && llvm::all_of(models, hasState);
      if (models.empty() || (models.size() != 1 && !entries) ||
          llvm::any_of(models, [](func::FuncOp f) {
            return llvm::any_of(f.getBody().front(), [](Operation &op) {
              return op.hasAttr("llmir.backward") || isa<tfm::AdamWUpdateOp>(op);
            });
          })) {
        module.emitError() << "--llm-pipeline-split: expected @train_microbatch "
                              "(run --tfm-build-train-step first) or one "
                              "partitioned forward function";
        return signalPassFailure();
      }
      mb = models.front();
      for (func::FuncOp f : models)
        tfm::inlineLayers(f);
      if (entries)
        for (func::FuncOp f : models)
          entryNames.push_back(f.getSymName().str());
      forwardOnly = true;
    } else {
      models = {mb};
    }
    auto error = [&](const Twine &message) {
      mb.emitOpError() << "--llm-pipeline-split: " << message;
      signalPassFailure();
    };
    int64_t pp = plan->axisSize("pp");
    int64_t m = plan->getMicrobatches(), vpp = plan->getVpp();
    StringRef name = plan->getSchedule();
    llvm::Expected<pl::Schedule> schedule =
        llvm::createStringError(llvm::inconvertibleErrorCode(), "no schedule");
    if (forwardOnly) {
      if (!scheduleFile.empty())
        return error("schedule-file applies to training steps only");
      // Forward only: each rank runs its chunks micro-batch by micro-batch.
      pl::Schedule fwd;
      fwd.name = "forward";
      fwd.numRanks = pp;
      fwd.numMicrobatches = m;
      fwd.chunksPerRank = vpp;
      const pl::ScheduleKind *kind = pl::findScheduleKind(name);
      fwd.vShape = kind && kind->vShape;
      fwd.ranks.resize(pp);
      for (int64_t r = 0; r < pp; ++r)
        for (int64_t k = 0; k < m; ++k)
          for (int64_t c = 0; c < vpp; ++c) {
            int64_t stage = fwd.vShape && c == 1 ? 2 * pp - 1 - r : c * pp + r;
            fwd.ranks[r].push_back(
                {pl::Action::F, static_cast<int>(k), static_cast<int>(stage)});
          }
      schedule = std::move(fwd);
    } else if (!scheduleFile.empty()) {
      auto buffer = llvm::MemoryBuffer::getFile(scheduleFile, /*IsText=*/true);
      if (!buffer)
        return error("cannot read schedule-file '" + scheduleFile +
                     "': " + buffer.getError().message());
      schedule = pl::parseSchedule((*buffer)->getBuffer());
      if (schedule && (schedule->numRanks != pp ||
                       schedule->chunksPerRank != vpp ||
                       schedule->numMicrobatches != m))
        return error("schedule-file '" + scheduleFile + "' is for pp=" +
                     Twine(schedule->numRanks) + " vpp=" +
                     Twine(schedule->chunksPerRank) + " microbatches=" +
                     Twine(schedule->numMicrobatches) + " but the plan has pp=" +
                     Twine(pp) + " vpp=" + Twine(vpp) +
                     " microbatches=" + Twine(m));
    } else {
      schedule = pl::makeSchedule(name, pp, m, vpp);
    }
    if (!schedule)
      return error(llvm::toString(schedule.takeError()));
    if (!forwardOnly)
      if (llvm::Error e = pl::verifySchedule(*schedule))
        return error(llvm::toString(std::move(e)));
    for (auto [i, f] : llvm::enumerate(models))
      if (failed(Splitter(module, f, *schedule, forwardOnly,
                          i < entryNames.size() ? StringRef(entryNames[i])
                                                : StringRef())
                     .run()))
        return signalPassFailure();
  }
};

} // namespace
