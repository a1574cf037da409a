# Backend operations: references and finite differences, on every backend.
vt_add_test(kernels SOURCES test_kernels.c NUMERIC LABELS unit)
