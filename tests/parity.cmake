# The CUDA backend against the CPU reference, operation by operation and over
# a few training steps of small models (tolerances: tests/test_parity.c).
# parity_cuda needs a GPU (label gpu; exits 77 = skipped without one);
# parity_selftest runs the same code with the CPU backend on both sides.
add_executable(test_parity test_parity.c)
target_link_libraries(test_parity PRIVATE vttest)
add_test(NAME parity_cuda COMMAND test_parity --backend cuda)
set_tests_properties(parity_cuda PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 900)
add_test(NAME parity_selftest COMMAND test_parity --backend cpu)
set_tests_properties(parity_selftest PROPERTIES LABELS unit TIMEOUT 900)
