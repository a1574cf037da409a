/* vgg.c - placeholder, being written. */
