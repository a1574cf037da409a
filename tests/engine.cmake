# The engine against PyTorch: weights after SGD steps and logits.
vt_add_py_test(torch_parity py/test_torch_parity.py LABELS engine TIMEOUT 900)
# Interrupted jobs (SIGKILL, SIGTERM mid-epoch) resume bit-identically; the
# feature cache changes nothing.
vt_add_py_test(resume py/test_resume.py LABELS engine TIMEOUT 900)
# The job document.
vt_add_test(jobspec SOURCES test_jobspec.c LABELS unit)
# The three ways of transfer learning and every output, through the client.
vt_add_py_test(workflows py/test_workflows.py LABELS "engine;daemon" TIMEOUT 1200)
