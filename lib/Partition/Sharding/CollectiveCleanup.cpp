//===- CollectiveCleanup.cpp - --llm-collective-cleanup -------------------===//

#include "llmir/Partition/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace llmir {
#define GEN_PASS_DEF_LLMCOLLECTIVECLEANUP
#include "llmir/Partition/Passes.h.inc"
} // namespace llmir

using namespace mlir;

namespace {

/// all_reduce(sum) -> all_slice on the same axes  ==>  reduce_scatter.
struct FuseAllReduceSlice : public OpRewritePattern<shard::AllSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(shard::AllSliceOp slice,
                                PatternRewriter &rewriter) const override {
    auto ar = slice.getInput().getDefiningOp<shard::AllReduceOp>();
    if (!ar || !ar.getResult().hasOneUse() ||
        ar.getReduction() != shard::ReductionKind::Sum ||
        ar.getGrid() != slice.getGrid() ||
        ar.getGridAxes() != slice.getGridAxes())
      return rewriter.notifyMatchFailure(slice, "not an all-reduce + slice pair");
    rewriter.replaceOpWithNewOp<shard::ReduceScatterOp>(
        slice, slice.getType(), slice.getGrid(), slice.getGridAxes(),
        ar.getInput(), shard::ReductionKind::Sum, slice.getSliceAxis());
    rewriter.eraseOp(ar);
    return success();
  }
};

bool isCollective(Operation *op) {
  return isa<shard::AllReduceOp, shard::AllGatherOp, shard::ReduceScatterOp,
             shard::AllSliceOp>(op);
}

/// Later identical collectives in a block reuse the first one's result.
void dedupe(Block &block) {
  SmallVector<Operation *> seen;
  for (Operation &op : llvm::make_early_inc_range(block)) {
    for (Region &r : op.getRegions())
      for (Block &b : r)
        dedupe(b);
    if (!isCollective(&op))
      continue;
    auto same = llvm::find_if(seen, [&](Operation *prev) {
      return prev->getName() == op.getName() &&
             prev->getOperands() == op.getOperands() &&
             prev->getResultTypes() == op.getResultTypes() &&
             prev->getAttrDictionary() == op.getAttrDictionary() &&
             prev->getPropertiesAsAttribute() == op.getPropertiesAsAttribute();
    });
    if (same == seen.end()) {
      seen.push_back(&op);
      continue;
    }
    op.replaceAllUsesWith((*same)->getResults());
    op.erase();
  }
}

struct CollectiveCleanupPass
    : public llmir::impl::LLMCollectiveCleanupBase<CollectiveCleanupPass> {
  void runOnOperation() override {
    for (Block &block : getOperation().getBody())
      dedupe(block);
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAllReduceSlice>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
