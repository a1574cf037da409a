# The common library's thread helpers (TSan runs them too).
vt_add_test(bg SOURCES test_bg.c LABELS "unit;threads")
vt_add_test(pool SOURCES test_pool.c LABELS "unit;threads")
