# The daemon's pure parts.
vt_add_test(sched SOURCES test_sched.c ${CMAKE_SOURCE_DIR}/daemon/sched.c LABELS unit)
