# vt-bench on the CPU backend at a tiny size: the benchmark program itself
# keeps working (its figures are measured on a GPU by scripts/gpu-check.sh).
add_test(NAME bench_smoke
         COMMAND vt-bench --backend cpu --batch 2 --size 32 --iters 2 --warmup 1)
set_tests_properties(bench_smoke PROPERTIES LABELS unit TIMEOUT 300)
