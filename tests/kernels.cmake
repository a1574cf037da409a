# Backend operations: references and finite differences, on every backend.
vt_add_test(kernels SOURCES test_kernels.c NUMERIC LABELS unit)
# The whole trainable stack against finite differences.
vt_add_test(model SOURCES test_model.c NUMERIC LABELS unit)
# The CUDA backend's direct first-layer convolution, its own code run on the
# host (no GPU needed), wherever the CUDA backend is built.
if(VT_WITH_CUDA)
  vt_add_test(conv_small SOURCES test_conv_small.cu LABELS unit)
  target_include_directories(test_conv_small PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  # Linked by the C compiler like every other test, so that the sanitizer
  # flags of add_link_options apply (nvcc would not accept them).
  set_target_properties(test_conv_small PROPERTIES LINKER_LANGUAGE C)
  target_link_libraries(test_conv_small PRIVATE stdc++)
endif()
