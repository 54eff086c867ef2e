//===- ExecOps.td - the exec scheduled-program dialect ----*- tablegen -*-===//
//
// A scheduled per-stage program: every buffer is an offset in one
// preplanned arena, every kernel launch, collective and event is explicit and
// ordered. This is what the program file carries to the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_EXEC_IR_EXECOPS_TD
#define LLMIR_DIALECT_EXEC_IR_EXECOPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Exec_Dialect : Dialect {
  let name = "exec";
  let cppNamespace = "::llmir::exec";
  let summary = "Scheduled per-stage programs over a static memory arena";
  let description = [{
    An `exec.program` is straight-line code for one pipeline stage (all ranks
    of a stage run the same program on their own shard). Buffers are byte
    ranges of the stage's arena, fixed by the compiler's memory plan; kernel
    launches read and write buffers in place (destination-passing style).
    Collectives run on the communication stream; events order streams.
  }];
  let useDefaultTypePrinterParser = 1;
}

class Exec_Op<string mnemonic, list<Trait> traits = []>
    : Op<Exec_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

def Exec_BufferType : TypeDef<Exec_Dialect, "Buffer"> {
  let mnemonic = "buffer";
  let summary = "a typed view of a byte range of the arena";
  let description = [{
    `!exec.buffer<2x16x64xf32>`: a dense row-major tensor stored in the
    arena. Where it lives is given by the op that defines it.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape,
                        "::mlir::Type":$elementType);
  let assemblyFormat = "`<` custom<Shape>($shape, $elementType) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    int64_t getNumElements() const;
    /// Size in bytes (element count times element bytes).
    int64_t getSizeInBytes() const;
  }];
}

def Exec_AnyBuffer : Type<CPred<"::llvm::isa<::llmir::exec::BufferType>($_self)">,
                          "exec buffer", "::llmir::exec::BufferType">;

//===----------------------------------------------------------------------===//
// Program
//===----------------------------------------------------------------------===//

def Exec_ProgramOp : Exec_Op<"program", [
    IsolatedFromAbove, NoTerminator, SingleBlock, Symbol,
    DeclareOpInterfaceMethods<RegionKindInterface>]> {
  let summary = "the scheduled program of one pipeline stage";
  let description = [{
    `arena_bytes` is the size of the stage's memory arena (the memory plan's
    peak); every buffer lies inside it. `num_streams` streams exist: stream 0
    computes, stream 1 communicates.

    ```mlir
    exec.program @stage0 {arena_bytes = 4096 : i64, num_streams = 2 : i64, stage = 0 : i64} {
      %x = exec.input "input_ids" at 0 : !exec.buffer<2x8xi32>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$arena_bytes,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive]>, "2">:$num_streams,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "0">:$stage);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let hasRegionVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

class Exec_PlacedOp<string mnemonic, string what>
    : Exec_Op<mnemonic, [HasParent<"ProgramOp">]> {
  let summary = what # " at a fixed arena offset";
  let results = (outs Exec_AnyBuffer:$result);
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getEndOffset() {
      return static_cast<int64_t>(getOffset()) + getType().getSizeInBytes();
    }
  }];
}

def Exec_AllocOp : Exec_PlacedOp<"alloc", "a temporary buffer"> {
  let description = [{
    ```mlir
    %t = exec.alloc at 1024 : !exec.buffer<16x64xf32>
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$offset);
  let assemblyFormat = "`at` $offset attr-dict `:` type($result)";
}

def Exec_ParamOp : Exec_PlacedOp<"param", "a model parameter (this rank's shard)"> {
  let description = [{
    Loaded from the weights file by Hugging Face name before the first step;
    it stays resident.

    ```mlir
    %w = exec.param "wte.weight" at 0 : !exec.buffer<256x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset);
  let assemblyFormat = "$name `at` $offset attr-dict `:` type($result)";
}

def Exec_StateOp : Exec_PlacedOp<"state", "resident optimizer state (zero at start)"> {
  let description = [{
    Persists across steps (AdamW moments), named after its parameter.

    ```mlir
    %m = exec.state "wte.weight.exp_avg" at 4096 : !exec.buffer<256x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset);
  let assemblyFormat = "$name `at` $offset attr-dict `:` type($result)";
}

def Exec_InputOp : Exec_PlacedOp<"input", "a per-step input (tokens, labels)"> {
  let description = [{
    Filled by the runtime before each step (`input_ids`, `labels`).

    ```mlir
    %ids = exec.input "input_ids" at 0 : !exec.buffer<2x8xi32>
    ```
  }];
  let arguments = (ins StrAttr:$name,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset);
  let assemblyFormat = "$name `at` $offset attr-dict `:` type($result)";
}

def Exec_ViewOp : Exec_Op<"view", [Pure, HasParent<"ProgramOp">]> {
  let summary = "reinterpret a buffer with another shape (no copy)";
  let description = [{
    ```mlir
    %v = exec.view %t : !exec.buffer<2x8x64xf32> -> !exec.buffer<16x64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$source);
  let results = (outs Exec_AnyBuffer:$result);
  let assemblyFormat = "$source attr-dict `:` type($source) `->` type($result)";
  let hasVerifier = 1;
}

def Exec_OutputOp : Exec_Op<"output", [HasParent<"ProgramOp">]> {
  let summary = "names a buffer the runtime reads after the step";
  let description = [{
    ```mlir
    exec.output "loss" %l : !exec.buffer<f32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Exec_AnyBuffer:$buffer);
  let assemblyFormat = "$name $buffer attr-dict `:` type($buffer)";
}

//===----------------------------------------------------------------------===//
// Compute
//===----------------------------------------------------------------------===//

def Exec_GemmOp : Exec_Op<"gemm", [HasParent<"ProgramOp">]> {
  let summary = "C = alpha * op(A) op(B) + beta * C (+ bias), batched";
  let description = [{
    Operands are 2-D (`[M,K] x [K,N]`) or 3-D with a leading batch dimension.
    `trans_a` / `trans_b` read the operand's last two dims swapped. The
    optional bias (`[N]`) is added to every row of the result (a fused
    epilogue, as cuBLASLt offers).

    ```mlir
    exec.gemm %x, %w, %y bias %b {trans_b} stream 0
        : !exec.buffer<16x64xf32>, !exec.buffer<192x64xf32>, !exec.buffer<16x192xf32>, !exec.buffer<192xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$a, Exec_AnyBuffer:$b, Exec_AnyBuffer:$c,
                       Optional<Exec_AnyBuffer>:$bias,
                       UnitAttr:$trans_a, UnitAttr:$trans_b,
                       DefaultValuedAttr<F64Attr, "1.0">:$alpha,
                       DefaultValuedAttr<F64Attr, "0.0">:$beta,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "0">:$stream);
  let assemblyFormat = [{
    $a `,` $b `,` $c (`bias` $bias^)? attr-dict `stream` $stream `:`
    type($a) `,` type($b) `,` type($c) (`,` type($bias)^)?
  }];
  let hasVerifier = 1;
}

def Exec_KernelOp : Exec_Op<"kernel", [HasParent<"ProgramOp">, AttrSizedOperandSegments]> {
  let summary = "launch of a named fused kernel";
  let description = [{
    Reads `ins`, writes `outs`. The kernel name and the attributes it needs
    are checked against the table of kernels every runtime backend implements
    (see `getKernelSignature` in ExecDialect.h).

    ```mlir
    exec.kernel "layer_norm" ins(%x, %g, %b) outs(%y) {epsilon = 1.0e-05 : f64} stream 0
        : (!exec.buffer<16x64xf32>, !exec.buffer<64xf32>, !exec.buffer<64xf32>) -> (!exec.buffer<16x64xf32>)
    ```
  }];
  let arguments = (ins StrAttr:$kernel, Variadic<Exec_AnyBuffer>:$ins,
                       Variadic<Exec_AnyBuffer>:$outs,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "0">:$stream);
  let assemblyFormat = [{
    $kernel `ins` `(` $ins `)` `outs` `(` $outs `)` attr-dict `stream` $stream
    `:` functional-type($ins, $outs)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// attention / attention_grad: the saved log-sum-exp's type and pairing.
    ::mlir::LogicalResult verifySavedAttention();
  }];
}

//===----------------------------------------------------------------------===//
// Communication
//===----------------------------------------------------------------------===//

class Exec_CollectiveOp<string mnemonic, string what>
    : Exec_Op<mnemonic, [HasParent<"ProgramOp">]> {
  let summary = what # " over the ranks of one grid axis";
  let hasVerifier = 1;
}

def Exec_AllReduceOp : Exec_CollectiveOp<"all_reduce", "in-place sum (or max)"> {
  let description = [{
    ```mlir
    exec.all_reduce %t over "tp" stream 1 : !exec.buffer<16x64xf32>
    exec.all_reduce %m over "tp" reduction "max" stream 1 : !exec.buffer<16xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$buffer, StrAttr:$axis,
                       DefaultValuedAttr<StrAttr, "\"sum\"">:$reduction,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = [{
    $buffer `over` $axis (`reduction` $reduction^)? attr-dict `stream` $stream `:` type($buffer)
  }];
}

def Exec_AllGatherOp : Exec_CollectiveOp<"all_gather", "concatenation along dim 0"> {
  let description = [{
    `output` holds the group size times `input`'s elements, rank-ordered.

    ```mlir
    exec.all_gather %in, %out over "tp" stream 1 : !exec.buffer<8x64xf32>, !exec.buffer<16x64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$input, Exec_AnyBuffer:$output, StrAttr:$axis,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = "$input `,` $output `over` $axis attr-dict `stream` $stream `:` type($input) `,` type($output)";
}

def Exec_ReduceScatterOp : Exec_CollectiveOp<"reduce_scatter", "sum then scatter along dim 0"> {
  let description = [{
    `input` holds the group size times `output`'s elements.

    ```mlir
    exec.reduce_scatter %in, %out over "tp" stream 1 : !exec.buffer<16x64xf32>, !exec.buffer<8x64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$input, Exec_AnyBuffer:$output, StrAttr:$axis,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = "$input `,` $output `over` $axis attr-dict `stream` $stream `:` type($input) `,` type($output)";
}

def Exec_BroadcastOp : Exec_CollectiveOp<"broadcast", "copy from the axis-rank `root`"> {
  let description = [{
    ```mlir
    exec.broadcast %t from 0 over "dp" stream 1 : !exec.buffer<64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$buffer, ConfinedAttr<I64Attr, [IntNonNegative]>:$root,
                       StrAttr:$axis,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = "$buffer `from` $root `over` $axis attr-dict `stream` $stream `:` type($buffer)";
}

def Exec_SendOp : Exec_CollectiveOp<"send", "point-to-point send to the stage `peer_stage`"> {
  let description = [{
    ```mlir
    exec.send %act to 1 tag 7 stream 1 : !exec.buffer<2x8x64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$buffer,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$peer_stage,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$tag,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = "$buffer `to` $peer_stage `tag` $tag attr-dict `stream` $stream `:` type($buffer)";
}

def Exec_RecvOp : Exec_CollectiveOp<"recv", "point-to-point receive from the stage `peer_stage`"> {
  let description = [{
    ```mlir
    exec.recv %act from 0 tag 7 stream 1 : !exec.buffer<2x8x64xf32>
    ```
  }];
  let arguments = (ins Exec_AnyBuffer:$buffer,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$peer_stage,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$tag,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntNonNegative]>, "1">:$stream);
  let assemblyFormat = "$buffer `from` $peer_stage `tag` $tag attr-dict `stream` $stream `:` type($buffer)";
}

//===----------------------------------------------------------------------===//
// Events
//===----------------------------------------------------------------------===//

def Exec_EventRecordOp : Exec_Op<"event_record", [HasParent<"ProgramOp">]> {
  let summary = "mark a point on a stream";
  let description = [{
    ```mlir
    exec.event_record 3 stream 0
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$event,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$stream);
  let assemblyFormat = "$event attr-dict `stream` $stream";
  let hasVerifier = 1;
}

def Exec_EventWaitOp : Exec_Op<"event_wait", [HasParent<"ProgramOp">]> {
  let summary = "make a stream wait for a recorded event";
  let description = [{
    The event must be recorded earlier in the program on another stream.

    ```mlir
    exec.event_wait 3 stream 1
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$event,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$stream);
  let assemblyFormat = "$event attr-dict `stream` $stream";
  let hasVerifier = 1;
}

#endif // LLMIR_DIALECT_EXEC_IR_EXECOPS_TD
