/* h5keras.c - see h5keras.h (being written). */
#include "h5keras.h"
