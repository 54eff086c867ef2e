//===- TfmxOps.td - example dialect shipped as a plugin ----*- tablegen -*-===//

#ifndef LLMIR_EXAMPLES_PLUGINS_TFMXDIALECT_TFMXOPS_TD
#define LLMIR_EXAMPLES_PLUGINS_TFMXDIALECT_TFMXOPS_TD

include "mlir/IR/OpBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Tfmx_Dialect : Dialect {
  let name = "tfmx";
  let cppNamespace = "::tfmx";
  let summary = "Example user dialect loaded into llm-opt as a plugin";
}

def Tfmx_CheckpointOp : Op<Tfmx_Dialect, "checkpoint",
                           [Pure, SameOperandsAndResultType]> {
  let summary = "marks a value a user wants recomputed in backward";
  let description = [{
    ```mlir
    %y = tfmx.checkpoint %x : tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

#endif // LLMIR_EXAMPLES_PLUGINS_TFMXDIALECT_TFMXOPS_TD
