# vt-bench on the CPU backend at a tiny size: the benchmark program itself
# keeps working (its figures are measured on a GPU by scripts/gpu-check.sh).
add_test(NAME bench_smoke
         COMMAND vt-bench --backend cpu --batch 2 --size 32 --iters 2 --warmup 1)
set_tests_properties(bench_smoke PROPERTIES LABELS unit TIMEOUT 300)

# Its mistakes are named: a mode that is not one, an option that is not one.
add_test(NAME bench_refusals
         COMMAND sh -c "$<TARGET_FILE:vt-bench> --modes foo; test $? -eq 2 && $<TARGET_FILE:vt-bench> --bogus; test $? -eq 2")
set_tests_properties(bench_refusals PROPERTIES LABELS unit TIMEOUT 60
                     PASS_REGULAR_EXPRESSION "'foo' is not one of trunk_fwd.*unknown option --bogus")
