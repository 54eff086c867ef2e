//===- TfmInterfaces.td - tfm op interfaces ----------------*- tablegen -*-===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMINTERFACES_TD
#define LLMIR_DIALECT_TFM_IR_TFMINTERFACES_TD

include "mlir/IR/OpBase.td"

def Tfm_VJPOpInterface : OpInterface<"VJPOpInterface"> {
  let cppNamespace = "::llmir::tfm";
  let description = [{
    The reverse-mode rule of an op, used by --tfm-build-train-step: given the
    gradients of the op's results (null where a result has none), build the
    ops that compute the gradient of each operand. Ops of other dialects
    (the `shard` collectives) implement it as external models, and plugin
    dialects can implement it to take part in autodiff.
  }];
  let methods = [
    InterfaceMethod<[{
        Builds the vector-Jacobian product at the builder's insertion point.
        `operandGrads` comes sized to the operand count, all null; set the
        gradient of each operand that gets one (only where
        `context.needsGrad(operand)` is worth the work).
      }],
      "::mlir::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ArrayRef<::mlir::Value>":$resultGrads,
           "const ::llmir::tfm::VJPContext &":$context,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

#endif // LLMIR_DIALECT_TFM_IR_TFMINTERFACES_TD
