/* cuda_kernels.cu - temporary placeholder. */
