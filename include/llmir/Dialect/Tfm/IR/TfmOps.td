//===- TfmOps.td - the tfm transformer dialect ------------------*- tablegen -*-===//
//
// Model-level operations of GPT-2 and LLaMA-class transformers on builtin ranked
// tensors. Passes (sharding, pipeline split, autodiff, lowering to exec) work on
// these ops, so each op states its shape contract in its verifier.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMOPS_TD
#define LLMIR_DIALECT_TFM_IR_TFMOPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "llmir/Dialect/Tfm/IR/TfmInterfaces.td"
include "llmir/Dialect/Tfm/IR/TfmDialect.td"

class Tfm_Op<string mnemonic, list<Trait> traits = []>
    : Op<Tfm_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def Tfm_FloatElement : AnyTypeOf<[F32, BF16, F16], "f32, bf16 or f16">;
def Tfm_IdElement : AnyTypeOf<[I32, I64], "i32 or i64">;
def Tfm_FloatTensor
    : Type<And<[TensorOf<[F32, BF16, F16]>.predicate, HasStaticShapePred]>,
           "statically shaped tensor of f32, bf16 or f16",
           "::mlir::RankedTensorType">;
def Tfm_IdTensor
    : Type<And<[TensorOf<[I32, I64]>.predicate, HasStaticShapePred]>,
           "statically shaped tensor of i32 or i64 token ids",
           "::mlir::RankedTensorType">;
def Tfm_AnyTensor
    : Type<And<[TensorOf<[F32, BF16, F16, I32, I64]>.predicate,
                HasStaticShapePred]>,
           "statically shaped tensor of f32, bf16, f16, i32 or i64",
           "::mlir::RankedTensorType">;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Tfm_WeightLayout : I32EnumAttr<"WeightLayout",
    "storage layout of a linear weight", [
      I32EnumAttrCase<"in_out", 0>,
      I32EnumAttrCase<"out_in", 1>
    ]> {
  let cppNamespace = "::llmir::tfm";
}

def Tfm_GeluApproximation : I32EnumAttr<"GeluApproximation",
    "GELU formula", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"tanh", 1>
    ]> {
  let cppNamespace = "::llmir::tfm";
}

def Tfm_Reduction : I32EnumAttr<"Reduction",
    "how per-token losses are combined", [
      I32EnumAttrCase<"mean", 0>,
      I32EnumAttrCase<"sum", 1>
    ]> {
  let cppNamespace = "::llmir::tfm";
}

//===----------------------------------------------------------------------===//
// Embeddings and positions
//===----------------------------------------------------------------------===//

def Tfm_EmbeddingOp : Tfm_Op<"embedding", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "table lookup of token (or position) ids";
  let description = [{
    Gathers rows of `table` (`[num_embeddings, dim]`) for each id. The result
    shape is the ids shape followed by `dim`; its element type is the table's.

    With `shard_axis` (vocab parallelism, set by the partitioner) the table is
    this rank's block of rows `[i * rows, (i + 1) * rows)`, i the rank's index
    along that grid axis; ids outside the block give zero rows, so a sum over
    the axis yields the full lookup.

    ```mlir
    %h = tfm.embedding %ids, %wte
        : (tensor<2x8xi32>, tensor<64x32xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_IdTensor:$ids, Tfm_FloatTensor:$table,
                       OptionalAttr<StrAttr>:$shard_axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $table attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_PositionIdsOp : Tfm_Op<"position_ids", [Pure]> {
  let summary = "positions 0 .. seq-1 of every sequence";
  let description = [{
    Produces `[batch, seq]` ids where row b holds `offset, offset+1, ...`.
    Feeds learned position embeddings (GPT-2's `wpe`).

    ```mlir
    %pos = tfm.position_ids : tensor<2x8xi32>
    ```
  }];
  let arguments = (ins DefaultValuedAttr<I64Attr, "0">:$offset);
  let results = (outs Tfm_IdTensor:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Tfm_CpSliceOp : Tfm_Op<"cp_slice", [Pure]> {
  let summary = "this context-parallel rank's zig-zag chunks of the sequence";
  let description = [{
    Context parallelism (`--llm-partition cp=N`): dim 1 of `input` (the
    sequence of token ids, targets or positions) is cut into 2N chunks and
    the rank at index r along grid axis `axis` keeps chunks r and 2N-1-r, in
    that order (causal load balancing). Inserted by the partitioner; ids only
    (no gradient).

    ```mlir
    %mine = tfm.cp_slice %ids {axis = "cp"} : (tensor<2x16xi32>) -> tensor<2x8xi32>
    ```
  }];
  let arguments = (ins Tfm_IdTensor:$input, StrAttr:$axis);
  let results = (outs Tfm_IdTensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type($input, $result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Dense algebra
//===----------------------------------------------------------------------===//

def Tfm_LinearOp : Tfm_Op<"linear", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "affine projection of the last dimension";
  let description = [{
    `y[..., o] = sum_i x[..., i] * W(i, o) + bias[o]`. `layout` says how the
    weight is stored: `in_out` is `[in, out]` (GPT-2's Conv1D), `out_in` is
    `[out, in]` (torch.nn.Linear, LLaMA). The bias is optional.

    ```mlir
    %y = tfm.linear %x, %w bias %b layout in_out
        : (tensor<2x8x32xf32>, tensor<32x96xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$weight,
                       Optional<Tfm_FloatTensor>:$bias,
                       Tfm_WeightLayout:$layout);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? `layout` $layout attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Size of the contracted (input feature) dimension.
    int64_t getInFeatures();
    /// Size of the produced (output feature) dimension.
    int64_t getOutFeatures();
  }];
}

def Tfm_MatmulOp : Tfm_Op<"matmul", [Pure]> {
  let summary = "batched matrix product";
  let description = [{
    `[..., M, K] x [..., K, N] -> [..., M, N]` with identical leading (batch)
    dimensions. `transpose_a` / `transpose_b` read the corresponding operand's
    last two dimensions swapped.

    ```mlir
    %c = tfm.matmul %a, %b {transpose_b}
        : (tensor<4x8x16xf32>, tensor<4x32x16xf32>) -> tensor<4x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$lhs, Tfm_FloatTensor:$rhs,
                       UnitAttr:$transpose_a, UnitAttr:$transpose_b);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

def Tfm_LayerNormOp : Tfm_Op<"layer_norm", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "layer normalization over the last dimension";
  let description = [{
    `(x - mean) / sqrt(var + epsilon) * gamma + beta` with the biased variance,
    as torch.nn.LayerNorm. `beta` is optional.

    ```mlir
    %y = tfm.layer_norm %x, %g, %b {epsilon = 1.0e-05 : f64}
        : (tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$gamma,
                       Optional<Tfm_FloatTensor>:$beta,
                       DefaultValuedAttr<F64Attr, "1.0e-5">:$epsilon);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gamma (`,` $beta^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_RMSNormOp : Tfm_Op<"rms_norm", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "root-mean-square normalization over the last dimension";
  let description = [{
    `x / sqrt(mean(x^2) + epsilon) * gamma`, as LLaMA's RMSNorm.

    ```mlir
    %y = tfm.rms_norm %x, %g {epsilon = 1.0e-06 : f64}
        : (tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$gamma,
                       DefaultValuedAttr<F64Attr, "1.0e-6">:$epsilon);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gamma attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Element-wise
//===----------------------------------------------------------------------===//

def Tfm_GeluOp : Tfm_Op<"gelu", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "Gaussian error linear unit";
  let description = [{
    `none` is the exact erf form; `tanh` is the approximation GPT-2 uses
    (`gelu_new`).

    ```mlir
    %y = tfm.gelu tanh %x : tensor<2x8x128xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_GeluApproximation:$approximate);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$approximate $input attr-dict `:` type($result)";
}

def Tfm_SiluOp : Tfm_Op<"silu", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "x * sigmoid(x)";
  let description = [{
    ```mlir
    %y = tfm.silu %x : tensor<2x8x128xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

class Tfm_BinaryOp<string mnemonic, string formula>
    : Tfm_Op<mnemonic, [Pure, Commutative, SameOperandsAndResultType,
                        DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "element-wise " # formula # " of two same-shaped tensors";
  let description = [{
    Both operands and the result have the same type (no implicit broadcast).

    ```mlir
    %c = tfm.}] # mnemonic # [{ %a, %b : tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$lhs, Tfm_FloatTensor:$rhs);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Tfm_AddOp : Tfm_BinaryOp<"add", "sum">;
def Tfm_MulOp : Tfm_BinaryOp<"mul", "product">;

def Tfm_SoftmaxOp : Tfm_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "softmax along one axis";
  let description = [{
    `axis` may be negative (counted from the end), default -1.

    ```mlir
    %p = tfm.softmax %x {axis = -1 : i64} : tensor<2x8x64xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Attention and positional encoding
//===----------------------------------------------------------------------===//

def Tfm_AttentionOp : Tfm_Op<"attention", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "multi-head scaled dot-product attention (MHA, GQA, MQA)";
  let description = [{
    `q` is `[batch, seq, num_heads * head_dim]`; `k` and `v` are
    `[batch, seq, num_kv_heads * head_dim]`. Query head h attends with kv head
    `h / (num_heads / num_kv_heads)` (grouped-query attention). Scores are
    scaled by `scale` (default `1/sqrt(head_dim)`); `causal` masks future
    positions. The result has q's shape.

    ```mlir
    %o = tfm.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, causal}
        : (tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$query, Tfm_FloatTensor:$key,
                       Tfm_FloatTensor:$value,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                       UnitAttr:$causal,
                       OptionalAttr<F64Attr>:$scale);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getHeadDim();
    /// The score scale actually used: `scale` or 1/sqrt(head_dim).
    double getEffectiveScale();
  }];
}

def Tfm_RopeOp : Tfm_Op<"rope", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "rotary position embedding (rotate-half convention)";
  let description = [{
    Rotates each head of `[batch, seq, num_heads * head_dim]` by position
    `offset + s` with frequencies `theta^(-2i/head_dim)`, pairing dimension i
    with i + head_dim/2 as Hugging Face's `rotate_half` does.

    ```mlir
    %q2 = tfm.rope %q {num_heads = 4 : i64, theta = 1.0e+04 : f64} : tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       DefaultValuedAttr<F64Attr, "10000.0">:$theta,
                       DefaultValuedAttr<I64Attr, "0">:$offset);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

def Tfm_CrossEntropyOp : Tfm_Op<"cross_entropy", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "softmax cross-entropy of logits against integer labels";
  let description = [{
    `logits` is `[..., vocab]`, `labels` has the logits shape without the last
    dimension. The result is a 0-d floating-point tensor: the mean (default) or
    sum over all tokens of `-log softmax(logits)[label]`.

    ```mlir
    %loss = tfm.cross_entropy %logits, %labels
        : (tensor<2x8x64xf32>, tensor<2x8xi32>) -> tensor<f32>
    %sum = tfm.cross_entropy %logits, %labels reduction sum
        : (tensor<2x8x64xf32>, tensor<2x8xi32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$logits, Tfm_IdTensor:$labels,
                       DefaultValuedAttr<Tfm_Reduction, "Reduction::mean">:$reduction);
  let results = (outs Tfm_FloatTensor:$loss);
  let assemblyFormat = [{
    $logits `,` $labels (`reduction` $reduction^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

def Tfm_ReshapeOp : Tfm_Op<"reshape", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "reinterpret a tensor with another static shape";
  let description = [{
    ```mlir
    %y = tfm.reshape %x : tensor<2x8x32xf32> -> tensor<16x32xf32>
    ```
  }];
  let arguments = (ins Tfm_AnyTensor:$input);
  let results = (outs Tfm_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Tfm_TransposeOp : Tfm_Op<"transpose", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "permute dimensions";
  let description = [{
    `result.shape[i] = input.shape[permutation[i]]`.

    ```mlir
    %y = tfm.transpose %x [1, 0] : tensor<8x32xf32> -> tensor<32x8xf32>
    ```
  }];
  let arguments = (ins Tfm_AnyTensor:$input, DenseI64ArrayAttr:$permutation);
  let results = (outs Tfm_AnyTensor:$result);
  let assemblyFormat = [{
    $input $permutation attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tfm_SplitOp : Tfm_Op<"split", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "split a tensor into consecutive pieces along one axis";
  let description = [{
    The results' sizes along `axis` add up to the input's; all other
    dimensions and the element type are the input's. Used for GPT-2's fused
    `c_attn` projection (q | k | v concatenated along the last dimension).

    ```mlir
    %q, %k, %v = tfm.split %qkv {axis = 2 : i64}
        : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_AnyTensor:$input, I64Attr:$axis);
  let results = (outs Variadic<Tfm_AnyTensor>:$results);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Partitioned forms (produced by --llm-partition)
//===----------------------------------------------------------------------===//

def Tfm_CastOp : Tfm_Op<"cast", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "convert between float element types (round to nearest even)";
  let description = [{
    ```mlir
    %h = tfm.cast %g : tensor<1024xf32> -> tensor<1024xbf16>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Tfm_BiasAddOp : Tfm_Op<"bias_add", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "add a bias vector to every row";
  let description = [{
    `y[..., c] = x[..., c] + bias[c]`. The partitioner moves a row-parallel
    linear's bias here, after the all-reduce, so it is added once.

    ```mlir
    %y = tfm.bias_add %x, %b : (tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$bias);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $bias attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_ScaleOp : Tfm_Op<"scale", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "multiply by a constant";
  let description = [{
    ```mlir
    %half = tfm.scale %loss {factor = 5.0e-01 : f64} : tensor<f32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, F64Attr:$factor);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Tfm_ReduceMaxOp : Tfm_Op<"reduce_max", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "maximum over the last dimension";
  let description = [{
    ```mlir
    %m = tfm.reduce_max %logits : (tensor<2x8x64xf32>) -> tensor<2x8xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_CrossEntropyPartialOp : Tfm_Op<"cross_entropy_partial", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "per-rank pieces of a vocab-parallel cross-entropy";
  let description = [{
    For logits holding this rank's vocab block along `shard_axis`
    (`[..., vocab / n]`, block index i = the rank's index on that axis) and the
    global row maximum `max`: `sum_exp[r] = sum_v exp(logits[r, v] - max[r])`
    and `target[r] = logits[r, labels[r] - i * vocab / n]` when the label falls
    in the block, else 0. Summing both over the axis gives the full softmax
    denominator and the target logit (Megatron's vocab-parallel CE).

    ```mlir
    %s, %t = tfm.cross_entropy_partial %logits, %labels, %max {shard_axis = "tp"}
        : (tensor<2x8x32xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$logits, Tfm_IdTensor:$labels,
                       Tfm_FloatTensor:$max, StrAttr:$shard_axis);
  let results = (outs Tfm_FloatTensor:$sum_exp, Tfm_FloatTensor:$target);
  let assemblyFormat = [{
    $logits `,` $labels `,` $max attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_CrossEntropyFinalizeOp : Tfm_Op<"cross_entropy_finalize", [Pure, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "loss from the reduced pieces of a vocab-parallel cross-entropy";
  let description = [{
    `loss = mean_r (log(sum_exp[r]) + max[r] - target[r])` (or the sum).

    ```mlir
    %loss = tfm.cross_entropy_finalize %max, %s, %t
        : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$max, Tfm_FloatTensor:$sum_exp,
                       Tfm_FloatTensor:$target,
                       DefaultValuedAttr<Tfm_Reduction, "Reduction::mean">:$reduction);
  let results = (outs Tfm_FloatTensor:$loss);
  let assemblyFormat = [{
    $max `,` $sum_exp `,` $target (`reduction` $reduction^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Training: backward ops and the optimizer (produced by --tfm-build-train-step)
//===----------------------------------------------------------------------===//

def Tfm_TpCopyOp : Tfm_Op<"tp_copy", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Tfm_VJPOpInterface>]> {
  let summary = "identity whose gradient is all-reduced over a grid axis";
  let description = [{
    Megatron-LM's `f`: marks a replicated tensor entering a tensor-parallel
    region (the input of column-parallel linears). The forward is the
    identity; reverse-mode autodiff turns it into an all-reduce of the
    gradient over `axis`.

    ```mlir
    %x2 = tfm.tp_copy %x {axis = "tp"} : tensor<2x8x64xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, StrAttr:$axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Tfm_SumRowsOp : Tfm_Op<"sum_rows", [Pure]> {
  let summary = "sum over all but the last dimension (bias gradient)";
  let description = [{
    ```mlir
    %db = tfm.sum_rows %dy : (tensor<2x8x64xf32>) -> tensor<64xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_EmbeddingGradOp : Tfm_Op<"embedding_grad", [Pure]> {
  let summary = "gradient of an embedding table";
  let description = [{
    `dtable[ids[i]] += dout[i]` over a zero table of the result's shape. With
    `shard_axis` the table is this rank's row block, as for tfm.embedding.

    ```mlir
    %dt = tfm.embedding_grad %ids, %dy : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<256x64xf32>
    ```
  }];
  let arguments = (ins Tfm_IdTensor:$ids, Tfm_FloatTensor:$dout,
                       OptionalAttr<StrAttr>:$shard_axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$ids `,` $dout attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_GeluGradOp : Tfm_Op<"gelu_grad", [Pure, SameOperandsAndResultType]> {
  let summary = "gradient of tfm.gelu";
  let description = [{
    ```mlir
    %dx = tfm.gelu_grad tanh %x, %dy : tensor<2x8x256xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$dout,
                       Tfm_GeluApproximation:$approximate);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$approximate $input `,` $dout attr-dict `:` type($result)";
}

def Tfm_SiluGradOp : Tfm_Op<"silu_grad", [Pure, SameOperandsAndResultType]> {
  let summary = "gradient of tfm.silu";
  let description = [{
    ```mlir
    %dx = tfm.silu_grad %x, %dy : tensor<2x8x176xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$dout);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$input `,` $dout attr-dict `:` type($result)";
}

def Tfm_LayerNormGradOp : Tfm_Op<"layer_norm_grad", [Pure]> {
  let summary = "gradients of tfm.layer_norm (input, gamma, beta)";
  let description = [{
    Recomputes the row statistics from `input`.

    ```mlir
    %dx, %dg, %db = tfm.layer_norm_grad %x, %g, %dy {epsilon = 1.0e-05 : f64}
        : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$gamma,
                       Tfm_FloatTensor:$dout, F64Attr:$epsilon);
  let results = (outs Tfm_FloatTensor:$dinput, Tfm_FloatTensor:$dgamma,
                      Tfm_FloatTensor:$dbeta);
  let assemblyFormat = "$input `,` $gamma `,` $dout attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_RMSNormGradOp : Tfm_Op<"rms_norm_grad", [Pure]> {
  let summary = "gradients of tfm.rms_norm (input, gamma)";
  let description = [{
    ```mlir
    %dx, %dg = tfm.rms_norm_grad %x, %g, %dy {epsilon = 1.0e-06 : f64}
        : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_FloatTensor:$gamma,
                       Tfm_FloatTensor:$dout, F64Attr:$epsilon);
  let results = (outs Tfm_FloatTensor:$dinput, Tfm_FloatTensor:$dgamma);
  let assemblyFormat = "$input `,` $gamma `,` $dout attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_AttentionGradOp : Tfm_Op<"attention_grad", [Pure]> {
  let summary = "gradients of tfm.attention (query, key, value)";
  let description = [{
    Recomputes the attention probabilities; key/value gradients are summed
    over the query heads of each kv group.

    ```mlir
    %dq, %dk, %dv = tfm.attention_grad %q, %k, %v, %dy {num_heads = 4 : i64, num_kv_heads = 2 : i64, causal, scale = 2.5e-01 : f64}
        : (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>)
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$query, Tfm_FloatTensor:$key,
                       Tfm_FloatTensor:$value, Tfm_FloatTensor:$dout,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                       UnitAttr:$causal, F64Attr:$scale);
  let results = (outs Tfm_FloatTensor:$dquery, Tfm_FloatTensor:$dkey,
                      Tfm_FloatTensor:$dvalue);
  let assemblyFormat = "$query `,` $key `,` $value `,` $dout attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_RopeGradOp : Tfm_Op<"rope_grad", [Pure, SameOperandsAndResultType]> {
  let summary = "gradient of tfm.rope (the inverse rotation)";
  let description = [{
    ```mlir
    %dx = tfm.rope_grad %dy {num_heads = 4 : i64, theta = 1.0e+04 : f64} : tensor<2x8x64xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$dout,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       DefaultValuedAttr<F64Attr, "10000.0">:$theta,
                       DefaultValuedAttr<I64Attr, "0">:$offset);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$dout attr-dict `:` type($result)";
}

def Tfm_ConcatOp : Tfm_Op<"concat", [Pure]> {
  let summary = "concatenate tensors along one axis (the inverse of tfm.split)";
  let description = [{
    ```mlir
    %qkv = tfm.concat %q, %k, %v {axis = 2 : i64}
        : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x96xf32>
    ```
  }];
  let arguments = (ins Variadic<Tfm_FloatTensor>:$inputs, I64Attr:$axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_CrossEntropyGradOp : Tfm_Op<"cross_entropy_grad", [Pure]> {
  let summary = "gradient of tfm.cross_entropy with respect to the logits";
  let description = [{
    `(softmax(logits) - onehot(labels)) * dloss` (divided by the row count for
    the mean reduction).

    ```mlir
    %dl = tfm.cross_entropy_grad %logits, %labels, %dloss
        : (tensor<2x8x64xf32>, tensor<2x8xi32>, tensor<f32>) -> tensor<2x8x64xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$logits, Tfm_IdTensor:$labels,
                       Tfm_FloatTensor:$dloss,
                       DefaultValuedAttr<Tfm_Reduction, "Reduction::mean">:$reduction);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $logits `,` $labels `,` $dloss (`reduction` $reduction^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_CrossEntropyPartialGradOp : Tfm_Op<"cross_entropy_partial_grad", [Pure]> {
  let summary = "gradient of tfm.cross_entropy_partial with respect to the logits";
  let description = [{
    `dlogits[r, v] = exp(logits[r, v] - max[r]) * dsum_exp[r]
                     + (v == label[r] - offset) * dtarget[r]`, the offset being
    this rank's vocab block start along `shard_axis` (`max` is a constant).

    ```mlir
    %dl = tfm.cross_entropy_partial_grad %logits, %labels, %max, %ds, %dt {shard_axis = "tp"}
        : (tensor<2x8x32xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$logits, Tfm_IdTensor:$labels,
                       Tfm_FloatTensor:$max, Tfm_FloatTensor:$dsum_exp,
                       Tfm_FloatTensor:$dtarget, StrAttr:$shard_axis);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $logits `,` $labels `,` $max `,` $dsum_exp `,` $dtarget attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_CrossEntropyFinalizeGradOp : Tfm_Op<"cross_entropy_finalize_grad", [Pure]> {
  let summary = "gradients of tfm.cross_entropy_finalize (sum_exp, target)";
  let description = [{
    For `loss = mean_r(log(sum_exp[r]) + max[r] - target[r])`:
    `dsum_exp = dloss / (rows * sum_exp)`, `dtarget = -dloss / rows` (the sum
    reduction drops the 1/rows); `max` is a constant.

    ```mlir
    %ds, %dt = tfm.cross_entropy_finalize_grad %s, %dloss
        : (tensor<2x8xf32>, tensor<f32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$sum_exp, Tfm_FloatTensor:$dloss,
                       DefaultValuedAttr<Tfm_Reduction, "Reduction::mean">:$reduction);
  let results = (outs Tfm_FloatTensor:$dsum_exp, Tfm_FloatTensor:$dtarget);
  let assemblyFormat = [{
    $sum_exp `,` $dloss (`reduction` $reduction^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_AdamWUpdateOp : Tfm_Op<"adamw_update", [MemoryEffects<[MemWrite]>]> {
  let summary = "one AdamW step on a parameter (in place)";
  let description = [{
    With `shard_axis` (ZeRO-1), `grad` is this rank's flat chunk of the
    reduce-scattered gradient and only the matching chunk of the parameter
    (and chunk-sized moments) is updated; tfm.param_all_gather follows.

    Updates the parameter and its first/second moments (optimizer state the
    runtime keeps per parameter) exactly as torch.optim.AdamW: decoupled
    weight decay when `decay` is set (parameters of rank >= 2), then the
    bias-corrected Adam step. The learning rate, weight decay and step
    number come from the runtime (`llm-run --lr --weight-decay`).

    With `norm_sq` (the global sum of squared gradients, see
    tfm.grad_norm_sq) and a clipping threshold C from the runtime
    (`llm-run --clip-grad-norm C`), the gradient is first scaled by
    min(1, C / (sqrt(norm_sq) + 1e-6)) as torch.nn.utils.clip_grad_norm_ does.

    `loss_scaled` (f16 training, needs `norm_sq`): the gradient is S times the
    true one (tfm.loss_scale); it is multiplied by 1/S (the norm read as
    sqrt(norm_sq) / S), and the update is skipped, leaving the parameter and
    its moments unchanged, when norm_sq is not finite.

    ```mlir
    tfm.adamw_update %w, %dw {decay, beta1 = 9.0e-01 : f64, beta2 = 9.5e-01 : f64, eps = 1.0e-08 : f64}
        : tensor<64x192xf32>, tensor<64x192xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$param, Tfm_FloatTensor:$grad,
                       Optional<TensorOf<[F32]>>:$grad_norm_sq,
                       UnitAttr:$decay,
                       DefaultValuedAttr<F64Attr, "0.9">:$beta1,
                       DefaultValuedAttr<F64Attr, "0.95">:$beta2,
                       DefaultValuedAttr<F64Attr, "1.0e-8">:$eps,
                       OptionalAttr<StrAttr>:$shard_axis,
                       UnitAttr:$loss_scaled);
  let assemblyFormat = [{
    $param `,` $grad (`norm_sq` $grad_norm_sq^)? attr-dict `:` type($param) `,`
    type($grad) (`,` type($grad_norm_sq)^)?
  }];
  let hasVerifier = 1;
}

def Tfm_GradNormSqOp : Tfm_Op<"grad_norm_sq", [Pure]> {
  let summary = "sum of the squares of a gradient (for the global gradient norm)";
  let description = [{
    The partial of the global L2 gradient norm that --tfm-build-train-step
    and --llm-pipeline-split emit for `clip_grad_norm_` semantics: these
    partials are summed, all-reduced over the axes where gradients are
    sharded, and read by tfm.adamw_update (`norm_sq`), which scales each
    gradient by min(1, C / (sqrt(norm_sq) + 1e-6)) when the runtime is given
    a clipping threshold C (`llm-run --clip-grad-norm C`).

    ```mlir
    %s = tfm.grad_norm_sq %dw : (tensor<64x192xf32>) -> tensor<1xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input);
  let results = (outs TensorOf<[F32]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Tfm_LossScaleOp : Tfm_Op<"loss_scale", []> {
  let summary = "the runtime's current loss scale (f16 training)";
  let description = [{
    The seed of the backward pass of an f16 train step
    (`--llm-mixed-precision=compute=f16`): d(loss * S)/d(loss) = S, the
    dynamic loss scale the runtime keeps (`llm-run --loss-scale-init`,
    `--loss-scale-growth-interval`; torch.cuda.amp.GradScaler's policy). The
    gradients are S times the true ones, so small values survive f16; every
    tfm.adamw_update marked `loss_scaled` multiplies its gradient by 1/S and
    skips the step when the global gradient norm is not finite (an overflow
    somewhere), and the runtime then halves S. Not pure: its value changes
    between steps.

    ```mlir
    %seed = tfm.loss_scale : tensor<f32>
    ```
  }];
  let results = (outs 0DTensorOf<[F32]>:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
}

def Tfm_SendOp : Tfm_Op<"send", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "send a tensor to another pipeline stage (buffered)";
  let description = [{
    Emitted by --llm-pipeline-split for activations and activation gradients
    that cross a stage boundary, and for the exchange of tied-parameter
    gradients. `peer_stage` is the receiver's pipeline coordinate; the
    runtime pairs it with the rank that has this rank's coordinates on every
    other plan axis. Sends are buffered (they never wait for the receiver);
    `tag` tells messages between one pair of stages apart.

    ```mlir
    tfm.send %h to 1 tag 3 : tensor<1x8x64xf32>
    ```
  }];
  let arguments = (ins Tfm_AnyTensor:$input,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$peer_stage,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$tag);
  let assemblyFormat = "$input `to` $peer_stage `tag` $tag attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def Tfm_RecvOp : Tfm_Op<"recv", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "receive a tensor from another pipeline stage (blocking)";
  let description = [{
    The matching end of a `tfm.send` with the same tag on stage
    `peer_stage`.

    ```mlir
    %h = tfm.recv from 0 tag 3 : tensor<1x8x64xf32>
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$peer_stage,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$tag);
  let results = (outs Tfm_AnyTensor:$result);
  let assemblyFormat = "`from` $peer_stage `tag` $tag attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Tfm_ParamAllGatherOp : Tfm_Op<"param_all_gather", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "reassemble a parameter from its per-rank chunks (ZeRO-1)";
  let description = [{
    After a sharded `tfm.adamw_update` (ZeRO-1: each rank of `axis` updated
    its flat chunk `[i * n / size, (i + 1) * n / size)` of the parameter),
    all-gathers the chunks so every rank holds the updated parameter.

    ```mlir
    tfm.param_all_gather %w {axis = "dp"} : tensor<64x192xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$param, StrAttr:$axis);
  let assemblyFormat = "$param attr-dict `:` type($param)";
}

//===----------------------------------------------------------------------===//
// Inference: KV cache and per-sequence positions
//===----------------------------------------------------------------------===//

def Tfm_KvCacheWriteOp : Tfm_Op<"kv_cache_write", [MemoryEffects<[MemWrite]>]> {
  let summary = "writes keys or values into a KV cache (in place)";
  let description = [{
    `cache` is one layer's key (or value) cache `[batch, kv_heads, max_seq,
    head_dim]`, a function argument marked `tfm.state` that persists across
    calls; `value` is `[batch, seq, kv_heads * head_dim]`. Row s of sequence b
    is written at cache position `positions[b] + s` (`positions` `[batch]`;
    without it, position s: a prompt written from the start). The result is
    the updated cache: the same buffer, written in place, so readers of the
    result see the new entries.

    ```mlir
    %k2 = tfm.kv_cache_write %kc, %k, %pos
        : (tensor<2x2x64x8xf32>, tensor<2x1x16xf32>, tensor<2xi32>) -> tensor<2x2x64x8xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$cache, Tfm_FloatTensor:$value,
                       Optional<Tfm_IdTensor>:$positions);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $cache `,` $value (`,` $positions^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_CacheAttentionOp : Tfm_Op<"cache_attention", [Pure]> {
  let summary = "attention of new queries over a KV cache";
  let description = [{
    `query` is `[batch, seq, num_heads * head_dim]` (the new tokens of each
    sequence); `key_cache` and `value_cache` are `[batch, num_kv_heads,
    max_seq, head_dim]`; query s of sequence b sits at position
    `positions[b] + s` and attends cache positions `0 .. positions[b] + s`
    (causal over the cache; later cache entries are ignored). Query head h
    uses kv head `h / (num_heads / num_kv_heads)`; scores are scaled by
    `scale` (default `1/sqrt(head_dim)`). The result has the query's shape.

    ```mlir
    %o = tfm.cache_attention %q, %kc, %vc, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64}
        : (tensor<2x1x32xf32>, tensor<2x2x64x8xf32>, tensor<2x2x64x8xf32>, tensor<2xi32>) -> tensor<2x1x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$query, Tfm_FloatTensor:$key_cache,
                       Tfm_FloatTensor:$value_cache, Tfm_IdTensor:$positions,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                       OptionalAttr<F64Attr>:$scale);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key_cache `,` $value_cache `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The score scale actually used: `scale` or 1/sqrt(head_dim).
    double getEffectiveScale();
  }];
}

def Tfm_RopeAtOp : Tfm_Op<"rope_at", [Pure]> {
  let summary = "rotary position embedding at per-sequence positions";
  let description = [{
    Like `tfm.rope`, but row s of sequence b of `[batch, seq, num_heads *
    head_dim]` is rotated by position `positions[b] + s` (`positions`
    `[batch]`): the positions of new tokens during decoding.

    ```mlir
    %q2 = tfm.rope_at %q, %pos {num_heads = 4 : i64, theta = 1.0e+04 : f64}
        : (tensor<2x1x32xf32>, tensor<2xi32>) -> tensor<2x1x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_IdTensor:$positions,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       DefaultValuedAttr<F64Attr, "10000.0">:$theta);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Tfm_LastTokenOp : Tfm_Op<"last_token", [Pure]> {
  let summary = "each sequence's row at its last valid position";
  let description = [{
    `result[b] = input[b, lengths[b] - 1]` for `input` `[batch, seq, dim]`
    and `lengths` `[batch]` (right-padded prompts): the hidden state whose
    logits predict each sequence's next token.

    ```mlir
    %last = tfm.last_token %h, %lengths
        : (tensor<2x8x32xf32>, tensor<2xi32>) -> tensor<2x32xf32>
    ```
  }];
  let arguments = (ins Tfm_FloatTensor:$input, Tfm_IdTensor:$lengths);
  let results = (outs Tfm_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $lengths attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Layer grouping
//===----------------------------------------------------------------------===//

def Tfm_LayerOp : Tfm_Op<"layer", [
    RecursiveMemoryEffects, SingleBlockImplicitTerminator<"YieldOp">]> {
  let summary = "one decoder block (\"layer i\")";
  let description = [{
    Groups the ops of decoder block `index` so passes (pipeline split, cost
    model, recompute) can treat a layer as a unit. The region may use values
    defined above it (the block's parameters are function arguments); its
    results are the values passed to `tfm.yield`. Layers may not nest.

    ```mlir
    %h1 = tfm.layer 0 : tensor<2x8x32xf32> {
      %y = tfm.add %h0, %h0 : tensor<2x8x32xf32>
      tfm.yield %y : tensor<2x8x32xf32>
    }
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$index);
  let results = (outs Variadic<Tfm_AnyTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$index attr-dict-with-keyword (`:` type($results)^)? $body";
  let hasVerifier = 1;
  let skipDefaultBuilders = 1;
  let builders = [
    OpBuilder<(ins "::mlir::TypeRange":$resultTypes, "int64_t":$index)>
  ];
}

def Tfm_YieldOp : Tfm_Op<"yield", [Pure, Terminator, ReturnLike,
                                    HasParent<"LayerOp">]> {
  let summary = "returns the results of a tfm.layer";
  let description = [{
    ```mlir
    tfm.yield %y : tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Variadic<Tfm_AnyTensor>:$values);
  let builders = [OpBuilder<(ins), [{ /* nothing to yield */ }]>];
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
}

#endif // LLMIR_DIALECT_TFM_IR_TFMOPS_TD
