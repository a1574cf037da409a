/* train.c - placeholder, being written. */
