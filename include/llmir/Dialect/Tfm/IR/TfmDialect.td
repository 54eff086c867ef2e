//===- TfmDialect.td - the tfm dialect definition ---------------*- tablegen -*-===//
//
// The dialect record, shared by the ops (TfmOps.td) and the attributes
// (TfmAttrs.td).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMDIALECT_TD
#define LLMIR_DIALECT_TFM_IR_TFMDIALECT_TD

include "mlir/IR/OpBase.td"

//===----------------------------------------------------------------------===//
// Dialect
//===----------------------------------------------------------------------===//

def Tfm_Dialect : Dialect {
  let name = "tfm";
  let cppNamespace = "::llmir::tfm";
  let summary = "Transformer model operations (GPT-2 and LLaMA class)";
  let description = [{
    The `tfm` dialect describes a transformer model as a function over static
    ranked tensors. Parameters are function arguments whose `tfm.param`
    argument attribute holds the Hugging Face parameter name (for example
    `"h.3.attn.c_attn.weight"`); model inputs carry `tfm.input` (`"input_ids"`,
    `"labels"`). Decoder blocks are wrapped in `tfm.layer` regions so passes can
    see "layer i".

    Floating-point tensors are f32, bf16 or f16; token ids are i32 or i64.
    Attention and RoPE operate on the folded `[batch, seq, heads * head_dim]`
    layout, as produced by the projections.
  }];
  let extraClassDeclaration = [{
    /// Argument attribute naming a parameter by its Hugging Face name.
    static constexpr ::llvm::StringLiteral kParamAttrName = "tfm.param";
    /// Argument attribute naming a model input ("input_ids", "labels").
    static constexpr ::llvm::StringLiteral kInputAttrName = "tfm.input";
    /// Module attribute holding the imported model's hyper-parameters.
    static constexpr ::llvm::StringLiteral kModelAttrName = "tfm.model";
    /// Argument attribute naming resident state the function reads and
    /// updates in place across calls (a layer's KV cache: "cache.3.k").
    static constexpr ::llvm::StringLiteral kStateAttrName = "tfm.state";
    /// Context parallelism (discardable, on attention, rope and their
    /// gradients): the grid axis the sequence is split over in zig-zag
    /// chunks; positions and the causal mask follow the global order.
    static constexpr ::llvm::StringLiteral kCpAxisAttrName = "cp_axis";
    /// Discardable attribute of the train step's backward ops (set by
    /// --tfm-build-train-step): the pipeline split's phases, the memory
    /// plan's saved activations.
    static constexpr ::llvm::StringLiteral kBackwardAttrName = "llmir.backward";

  private:
    /// Adds the attributes (TfmAttrs.td); called by initialize().
    void registerAttributes();
  public:
  }];
  let useDefaultAttributePrinterParser = 1;
  // tfm.model: its sizes, checked against the attention ops (TfmDialect.cpp).
  let hasOperationAttrVerify = 1;
}

#endif // LLMIR_DIALECT_TFM_IR_TFMDIALECT_TD
