/* dataset.c - see dataset.h (being written). */
#include "dataset.h"
