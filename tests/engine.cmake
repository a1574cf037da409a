# The engine against PyTorch: weights after SGD steps and logits.
vt_add_py_test(torch_parity py/test_torch_parity.py LABELS engine TIMEOUT 900)
