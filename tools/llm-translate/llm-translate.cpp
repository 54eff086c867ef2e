//===- llm-translate.cpp - LLMIR import/export driver ---------------------===//
//
// Translations into and out of MLIR: Hugging Face config.json import now; the
// program-file export joins it with the exec dialect.
//
//===----------------------------------------------------------------------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"

int main(int argc, char **argv) {
  llmir::registerImportHFConfigTranslation();
  return mlir::failed(
      mlir::mlirTranslateMain(argc, argv, "LLMIR translation driver\n"));
}
