# Backend operations: references and finite differences, on every backend.
vt_add_test(kernels SOURCES test_kernels.c NUMERIC LABELS unit)
# The whole trainable stack against finite differences.
vt_add_test(model SOURCES test_model.c NUMERIC LABELS unit)
