# The daemon's pure parts.
vt_add_test(sched SOURCES test_sched.c ${CMAKE_SOURCE_DIR}/daemon/sched.c LABELS unit)
vt_add_test(jobs SOURCES test_jobs.c ${CMAKE_SOURCE_DIR}/daemon/jobs.c LABELS unit)
# The real daemon driven by the real client (CPU backend).
vt_add_py_test(daemon_e2e py/test_daemon.py LABELS "daemon;threads" TIMEOUT 1200)
# kill -9, SIGTERM, restart, full disk: nothing lost, resumed jobs identical.
vt_add_py_test(daemon_faults py/test_faults.py LABELS "daemon;threads" TIMEOUT 1200)
# Real users (root only): privacy, file access as the user, admins, fair share.
vt_add_py_test(daemon_users py/test_users.py LABELS "daemon;threads" TIMEOUT 1200)
# Unit files, socket activation, sd_notify.
vt_add_py_test(daemon_systemd py/test_systemd.py LABELS "daemon;threads" TIMEOUT 300)
vt_add_py_test(daemon_ux py/test_client_ux.py LABELS "daemon;threads" TIMEOUT 600)
