# The GPU check's table (scripts/gpu-summary.py) on the raw lines of a
# recorded GPU run and on what short or broken sessions leave, and the check's
# scripts' syntax; no GPU needed, a second.  The whole check is rehearsed by
# tests/gpucheck/rehearse.sh on a gpu-prepare bundle (minutes; not in the suite).
vt_add_py_test(gpucheck_summary gpucheck/test_summary.py LABELS unit TIMEOUT 60)
