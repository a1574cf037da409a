/* jobspec.c - placeholder, being written. */
