//===- llm-translate.cpp - LLMIR import/export driver ---------------------===//
//
// Translations into and out of MLIR: Hugging Face config.json import and the
// .llmir program-file export.
//
//===----------------------------------------------------------------------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"
#include "llmir/Target/Program/ExportProgram.h"

#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"

int main(int argc, char **argv) {
  llmir::registerImportHFConfigTranslation();
  llmir::registerExportProgramTranslation();
  return mlir::failed(
      mlir::mlirTranslateMain(argc, argv, "LLMIR translation driver\n"));
}
