# cuDNN fused attention for llmir_runtime_cuda (optional). The cuDNN frontend
# (header-only C++, from the nvidia-cudnn-frontend wheel) is compiled in with
# dynamic loading: libcudnn.so.9 is dlopen'ed at run time, so the same binary
# runs (with the built-in attention kernels) where cuDNN is absent.
# scripts/common.sh installs both wheels into LLMIR_CUDNN_ROOT (pip --target).
set(LLMIR_ENABLE_CUDNN AUTO CACHE STRING "cuDNN attention in the CUDA backend: ON, OFF or AUTO (ON when found)")
set_property(CACHE LLMIR_ENABLE_CUDNN PROPERTY STRINGS AUTO ON OFF)
if(DEFINED ENV{LLMIR_DEPS_PREFIX})
  set(llmir_cudnn_default_root "$ENV{LLMIR_DEPS_PREFIX}")
else()
  set(llmir_cudnn_default_root "$ENV{HOME}/.cache/llmir/deps")
endif()
set(LLMIR_CUDNN_ROOT "${llmir_cudnn_default_root}" CACHE PATH
  "Prefix holding the cuDNN wheels (include/cudnn_frontend.h, nvidia/cudnn/{include,lib})")

set(LLMIR_RUNTIME_HAS_CUDNN OFF)
if(NOT LLMIR_ENABLE_CUDNN STREQUAL "OFF")
  find_path(LLMIR_CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h
    HINTS ${LLMIR_CUDNN_ROOT}/include NO_CACHE)
  find_path(LLMIR_CUDNN_INCLUDE_DIR cudnn_version.h
    HINTS ${LLMIR_CUDNN_ROOT}/nvidia/cudnn/include ${CUDAToolkit_INCLUDE_DIRS} NO_CACHE)
  find_file(LLMIR_CUDNN_LIBRARY libcudnn.so.9
    HINTS ${LLMIR_CUDNN_ROOT}/nvidia/cudnn/lib ${CUDAToolkit_LIBRARY_DIR} NO_CACHE)
  if(LLMIR_CUDNN_FRONTEND_INCLUDE_DIR AND LLMIR_CUDNN_INCLUDE_DIR)
    set(LLMIR_RUNTIME_HAS_CUDNN ON)
  elseif(LLMIR_ENABLE_CUDNN STREQUAL "ON")
    message(FATAL_ERROR "LLMIR_ENABLE_CUDNN=ON but cudnn_frontend.h / cudnn_version.h were not found "
      "under LLMIR_CUDNN_ROOT=${LLMIR_CUDNN_ROOT} (scripts/common.sh installs them)")
  endif()
endif()

if(LLMIR_RUNTIME_HAS_CUDNN)
  file(STRINGS ${LLMIR_CUDNN_INCLUDE_DIR}/cudnn_version.h llmir_cudnn_version_lines
    REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ")
  string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCHLEVEL ([0-9]+).*" "\\1.\\2.\\3"
    llmir_cudnn_version "${llmir_cudnn_version_lines}")
  message(STATUS "LLMIR runtime: cuDNN attention on (cuDNN ${llmir_cudnn_version} headers in "
    "${LLMIR_CUDNN_INCLUDE_DIR}, frontend in ${LLMIR_CUDNN_FRONTEND_INCLUDE_DIR}; "
    "libcudnn.so.9 loaded at run time, default ${LLMIR_CUDNN_LIBRARY})")
  target_sources(llmir_runtime_cuda PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/CudnnAttention.cpp)
  # The wheel's cudnn headers before the CUDA toolkit's (which may hold another cuDNN).
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/CudnnAttention.cpp PROPERTIES
    INCLUDE_DIRECTORIES "${LLMIR_CUDNN_FRONTEND_INCLUDE_DIR};${LLMIR_CUDNN_INCLUDE_DIR}"
    COMPILE_DEFINITIONS "NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING;LLMIR_CUDNN_DEFAULT_LIBRARY=\"${LLMIR_CUDNN_LIBRARY}\"")
  target_compile_definitions(llmir_runtime_cuda PRIVATE LLMIR_HAVE_CUDNN=1)
  target_link_libraries(llmir_runtime_cuda PRIVATE ${CMAKE_DL_LIBS})
else()
  message(STATUS "LLMIR runtime: cuDNN attention off (no cudnn_frontend.h and cudnn_version.h under "
    "LLMIR_CUDNN_ROOT=${LLMIR_CUDNN_ROOT}; scripts/common.sh installs them); built-in attention kernels only")
endif()
