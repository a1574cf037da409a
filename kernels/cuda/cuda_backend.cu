/* cuda_backend.cu - temporary: the CUDA backend is being written. */
extern "C" {
#include "../../common/error.h"
#include "../backend_impl.h"
}
extern "C" int vt_cuda_backend_init(vt_backend *be)
{
    (void)be;
    return vt_error_set(VT_EUNSUPPORTED, "the CUDA backend is not implemented yet");
}
