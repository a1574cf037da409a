/* cuda_backend.cu - the CUDA backend: cuDNN convolutions, cuBLASLt dense
 * layers and the own kernels of cuda_kernels.cu, behind the vt_backend_ops
 * table (kernels/backend_impl.h).  kernels/cpu/cpu_backend.c is the
 * reference whose semantics every operation here matches.
 *
 * One backend = one device, one stream, one cuDNN handle, one cuBLAS and one
 * cuBLASLt handle; all work is queued on the stream and the host waits only
 * where the interface hands back host values (download, sync: softmax_xent's
 * sums are delivered by the next sync, see VT__XENT_SLOTS).
 *
 * Precision.  Activation tensors are VT_BF16 (bf16 storage, fp32
 * accumulation on tensor cores) or VT_F32.  Weights, biases, gradients and
 * velocities are always f32 masters; a bf16 product reads a bf16 "shadow"
 * copy of its f32 operand kept in tensor->shadow and refreshed when
 * tensor->version has moved since it was made (backend.c bumps the version
 * on every write).  sgd_update writes the shadow in the same pass as the
 * weights, so a training step never converts weights separately.  VT_F32
 * products are plain fp32 (CUDNN_FMA_MATH, CUBLAS_COMPUTE_32F) unless
 * VT_CUDA_TF32=1 allows TF32 tensor cores (PyTorch's default for cuDNN
 * convolutions; about 1e-3 relative error instead of 1e-6).
 *
 * Convolutions (3x3, pad 1, NHWC activations, KRSC = "NHWC" filters) go
 * through cuDNN's convolution API.  A plan per (kind, N, H, W, C, K, dtype)
 * holds the descriptors and the algorithm, chosen once by timing the
 * candidates on the real buffers (cudnnFind*AlgorithmEx) and cached; one
 * shared workspace grows to the largest chosen algorithm's need.  The
 * forward pass fuses bias and ReLU into the convolution
 * (cudnnConvolutionBiasActivationForward); where cuDNN refuses that for a
 * configuration, the plan remembers it and a vectorised bias+ReLU kernel
 * runs after the plain convolution.  For the first layer (C = 3) cuDNN's
 * input is padded to 8 channels in bf16 so that tensor-core kernels apply;
 * a direct kernel of our own (vt_cuk_conv_small_fwd) competes with that
 * once per shape, timed, and the faster one runs from then on.  Shapes no cuDNN
 * algorithm accepts fall back to direct reference kernels (slow, logged).
 *
 * Dense layers are cuBLASLt matrix products with the bias (+ReLU) epilogue,
 * one cached plan (descriptors + heuristic algorithm) per shape; without a
 * cuBLASLt algorithm they fall back to cublasGemmEx and the bias+ReLU kernel.
 *
 * Errors: every CUDA, cuDNN and cuBLAS status is checked (VT_CUDA_TRY,
 * VT_CUDNN_TRY, VT_CUBLAS_TRY record the call, file, line and the library's
 * message).  Out of memory is VT_EDEVOOM with the size; any other failure
 * of a call is VT_EDEVICE (that call failed; the context is still usable),
 * except a sticky device error (illegal address, launch failure, ...):
 * VT_EDEVLOST, saying the process must restart, and every later call fails
 * the same way at once.
 *
 * Environment (read once at init; defaults in brackets):
 *   VT_CUDA_DEVICE=N          device ordinal [0]
 *   VT_CUDA_TF32=1            allow TF32 for VT_F32 products [0]
 *   VT_CUDA_FUSE=0            never use cuDNN's fused bias+ReLU [1]
 *   VT_CUDA_PAD=0             do not pad C=3 inputs to 8 channels in bf16 [1]
 *   VT_CUDA_CONV_SEARCH=heuristic   pick algorithms by cuDNN's heuristics
 *                             instead of timing them [find]
 *   VT_CUDA_DETERMINISTIC=1   only deterministic convolution algorithms [0]
 *   VT_CUDA_WORKSPACE_MIB=N   largest convolution workspace to consider [1024]
 *   VT_CUDA_SMALL_CONV=own|cudnn   always / never use the direct kernel for
 *                             the first layer (C <= 4) instead of timing it
 *                             against cuDNN [auto; own where nothing is
 *                             timed: heuristic search or deterministic]
 *   VT_CUDA_GRAPHS=1          record repeated sequences (training steps) as
 *                             CUDA graphs and replay them [0]
 *   VT_CUDA_VERBOSE=1         log the algorithm chosen for each plan [0]
 *
 * Device memory that the backend allocates for itself (shadows, workspace,
 * scratch) is counted in be->mem_in_use / mem_peak next to the tensors that
 * backend.c counts, so vt_backend_memory() reports what the device holds,
 * the transient buffer of an algorithm search included.
 */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../common/error.h"
#include "../../common/log.h"
#include "../../common/rng.h"
#include "../backend_impl.h"
}
#include "cuda_impl.h"

#define VT__MIB (1024.0 * 1024.0)
#define VT__GIB (1024.0 * 1024.0 * 1024.0)
/* Softmax results a backend keeps before delivering them (see vt__cuda_sync). */
#define VT__XENT_SLOTS 256

/* ---- state --------------------------------------------------------------- */

enum { VT__FWD = 0, VT__BWD_DATA = 1, VT__BWD_FILTER = 2 };
static const char *const vt__kind_name[3] = {"fwd", "bwd_data", "bwd_filter"};

/* One convolution configuration.  x/y descriptors describe the input and
 * output of the forward convolution (dx and dy for the backward ones). */
typedef struct {
    int kind, n, h, w, c, k; /* key; c after padding */
    vt_dtype dt;             /* key: activation dtype */
    cudnnTensorDescriptor_t xd, yd, bd_dt, bd_f32; /* bias (1,K,1,1) in dt and f32 */
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int searched; /* algorithm chosen */
    int naive;    /* no cuDNN algorithm: reference kernel */
    int algo;     /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    size_t ws;    /* workspace bytes the algorithm needs */
    int fused;    /* forward bias+ReLU: -1 untried, 0 unavailable, 1 bias in dt, 2 bias f32 */
    int own;      /* forward by vt_cuk_conv_small_fwd: -1 undecided, 0 no, 1 yes */
} vt__conv_plan;

enum { VT__REC_NONE = 0, VT__REC_CAPTURE = 1, VT__REC_REPLAY = 2 };

/* VT_CUDA_SMALL_CONV: when the first layer's direct kernel runs. */
enum { VT__SMALL_AUTO = 0, VT__SMALL_OWN = 1, VT__SMALL_CUDNN = 2 };

/* One cuBLASLt matrix product configuration (column-major terms). */
typedef struct {
    int m, n, k, ta, tb, lda, ldb, ldd, epi; /* key */
    cudaDataType at, bt, dt;                 /* key */
    cublasComputeType_t ct;                  /* key */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int ok;   /* cuBLASLt has an algorithm; else cublasGemmEx + bias kernel */
    int used; /* ran successfully at least once */
} vt__gemm_plan;

enum { VT__EPI_NONE = 0, VT__EPI_BIAS = 1, VT__EPI_RELU_BIAS = 2 };

/* The bf16 copy of an f32 tensor (tensor->shadow). */
typedef struct {
    void *ptr;
    size_t bytes;     /* allocated */
    size_t elems;     /* elements the copy holds */
    unsigned version; /* tensor->version it was made from */
    int valid;
    int cpad;         /* 0, or the channel count it was padded to */
} vt__shadow;

/* A recorded sequence (vt_record_begin): a CUDA graph captured from the
 * stream, instantiated, and replayed with its per-run arguments patched. */
enum { VT__P_SGD = 0, VT__P_DROPOUT = 1 };
typedef struct {
    cudaGraphNode_t node; /* the captured kernel launch */
    int kind;             /* VT__P_* */
    float a, b, c;        /* sgd: lr, momentum, weight decay; dropout: rate, keep */
    int nesterov;         /* sgd */
    uint64_t base;        /* dropout: vt_rng_mix(seed ^ vt_rng_mix(stream)) */
    const void *shadow;   /* sgd: the bf16 copy the launch rewrites, or NULL */
} vt__patch;

struct vt_recording {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    unsigned gen;          /* the backend's buffer generation it was captured in */
    int nops;              /* operations in the sequence */
    vt__patch *patch;      /* the arguments that may change, in call order */
    int npatch, cap_patch;
    vt_cuk_xent *dres;     /* (2) device: [0] the captured softmax's result,
                              [1] the sum of the runs not yet delivered */
    vt_cuk_xent *hacc;     /* (1) pinned host copy of dres[1] */
    vt_xent_sums *sums;    /* where the softmax sums go (NULL: none recorded) */
    int xent_c;            /* its class count, for the label error */
    int pending;           /* dres[1] holds runs not yet delivered */
    int cursor, opcount;   /* during a replay: patches and operations seen */
    int bad;               /* during a replay: the calls did not match */
};

/* Memory freed while a sequence was open, freed when it ends. */
typedef struct {
    void *p;
    int host; /* pinned host memory, else device memory */
} vt__late_free;

/* Scratch slots: each use in one operation has its own slot. */
enum {
    VT__T_IN,    /* padded or converted activation input */
    VT__T_IN2,   /* a second converted input (dy) */
    VT__T_OUT,   /* output in the compute dtype before conversion */
    VT__T_DW,    /* bf16 weight gradient before conversion to f32 */
    VT__T_STAGE, /* host transfers: images, bf16 <-> f32 staging */
    VT__T_BOXES, /* vt_image_box array of an image batch */
    VT__T_PART,  /* column-sum partials */
    VT__T_COPY,  /* overlapping copies */
    VT__NTMP
};

typedef struct {
    vt_backend *be;
    int device;
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    cudnnActivationDescriptor_t relu;
    void *ws; /* cuDNN workspace */
    size_t ws_size;
    void *lt_ws; /* cuBLAS(Lt) workspace */
    size_t lt_ws_size;
    void *tmp[VT__NTMP];
    size_t tmp_size[VT__NTMP];
    vt__conv_plan **plans;
    int nplans, cap_plans;
    vt__gemm_plan **gplans;
    int ngplans, cap_gplans;
    /* Softmax results wait here until vt__cuda_sync delivers them, so that a
     * training step makes no round trip to the host. */
    vt_cuk_xent *dres, *hres;             /* (VT__XENT_SLOTS): device, pinned host */
    vt_xent_sums *xent_to[VT__XENT_SLOTS]; /* where each pending result goes */
    int xent_c[VT__XENT_SLOTS];           /* its class count, for the label error */
    int nxent;                            /* results pending */
    /* Page-locked buffers handed out by host_alloc (image batches are
     * decoded into them); uploads from them run asynchronously, and
     * `uploaded` marks the end of the latest one (see vt__cuda_host_fence). */
    struct {
        char *p;
        size_t bytes;
    } *hbuf;
    int nhbuf, cap_hbuf;
    cudaEvent_t uploaded;
    int upload_pending;
    int sticky;
    char sticky_msg[384];
    /* Recording (vt_record_begin): mode, the recording, the shadows that
     * capture marked fresh (made stale again if the capture fails), the
     * recordings whose softmax sums await delivery, and the generation of
     * the backend's own buffers (bumped whenever one moves or a weight is
     * written from the host, which makes recordings stale). */
    int rec_mode; /* VT__REC_* */
    vt_recording *rec;
    vt__shadow **touched;
    int ntouched, cap_touched;
    vt_recording **pending;
    int npending, cap_pending;
    int late_bad, late_label, late_c; /* a bad label found freeing a recording,
                                         reported by the next sync */
    unsigned gen;
    /* Tensor allocations made so far, and their count when the latest
     * capture began: a tensor allocated since is in no recording
     * (vt__maybe_recorded). */
    unsigned long long seq, captured_seq;
    /* Memory freed while a sequence is open (recorded or replayed): freeing
     * would wait for the stream, which a capture forbids, so it is freed
     * when the sequence ends (vt__late_free_drain); host: pinned memory. */
    vt__late_free *late_free;
    int nlate_free, cap_late_free;
    /* options */
    int tf32, fuse, pad, find, deterministic, verbose, small, graphs;
    size_t ws_limit;
} vt_cuda;

static vt_cuda *vt__cu(const vt_backend *be) { return (vt_cuda *)be->impl; }

/* ---- errors -------------------------------------------------------------- */

static const char *vt__base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Errors after which the CUDA context cannot be used again. */
static int vt__is_sticky(cudaError_t e)
{
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorExternalDevice:
    case cudaErrorUnknown:
        return 1;
    default:
        return 0;
    }
}

static int vt__cuda_fail(vt_cuda *cu, cudaError_t e, const char *call, const char *file,
                         int line)
{
    (void)cudaGetLastError(); /* clears the error unless it is sticky */
    if (vt__is_sticky(e)) {
        if (cu) {
            cu->sticky = 1;
            snprintf(cu->sticky_msg, sizeof cu->sticky_msg, "%s (%s) in %s at %s:%d",
                     cudaGetErrorString(e), cudaGetErrorName(e), call, vt__base(file), line);
        }
        return vt_error_set(VT_EDEVLOST,
                            "CUDA error %s (%s) in %s at %s:%d; the CUDA context is unusable: "
                            "the process must restart",
                            cudaGetErrorString(e), cudaGetErrorName(e), call, vt__base(file),
                            line);
    }
    if (e == cudaErrorMemoryAllocation)
        return vt_error_set(VT_EDEVOOM, "out of device memory in %s at %s:%d", call,
                            vt__base(file), line);
    return vt_error_set(VT_EDEVICE, "CUDA error %s (%s) in %s at %s:%d", cudaGetErrorString(e),
                        cudaGetErrorName(e), call, vt__base(file), line);
}

/* A library reported an execution failure: if the stream holds a sticky
 * CUDA error, report that instead. */
static int vt__sticky_behind(vt_cuda *cu, const char *call, const char *file, int line, int *rc)
{
    cudaError_t e;
    if (!cu)
        return 0;
    e = cudaStreamQuery(cu->stream);
    if (e != cudaSuccess && e != cudaErrorNotReady && vt__is_sticky(e)) {
        *rc = vt__cuda_fail(cu, e, call, file, line);
        return 1;
    }
    return 0;
}

static int vt__cudnn_fail(vt_cuda *cu, cudnnStatus_t st, const char *call, const char *file,
                          int line)
{
    char detail[256] = "";
    int code, rc;
    cudnnGetLastErrorString(detail, sizeof detail);
    if (st >= 5000 && st < 6000 && vt__sticky_behind(cu, call, file, line, &rc))
        return rc;
    (void)cudaGetLastError();
    if (st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        code = VT_EDEVOOM;
    else if (st == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
        code = VT_ENOMEM;
    else if (st >= 3000 && st < 4000)
        code = VT_EUNSUPPORTED;
    else
        code = VT_EDEVICE;
    return vt_error_set(code, "cuDNN %s in %s at %s:%d%s%s", cudnnGetErrorString(st), call,
                        vt__base(file), line, detail[0] ? ": " : "", detail);
}

static int vt__cublas_fail(vt_cuda *cu, cublasStatus_t st, const char *call, const char *file,
                           int line)
{
    int code, rc;
    if (st == CUBLAS_STATUS_EXECUTION_FAILED && vt__sticky_behind(cu, call, file, line, &rc))
        return rc;
    (void)cudaGetLastError();
    code = st == CUBLAS_STATUS_ALLOC_FAILED                                      ? VT_EDEVOOM
           : st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH ? VT_EUNSUPPORTED
                                                                                   : VT_EDEVICE;
    return vt_error_set(code, "cuBLAS %s in %s at %s:%d", cublasGetStatusString(st), call,
                        vt__base(file), line);
}

#define VT_CUDA_TRY(cu, call)                                                  \
    do {                                                                       \
        cudaError_t vt_e_ = (call);                                            \
        if (vt_e_ != cudaSuccess)                                              \
            return vt__cuda_fail((cu), vt_e_, #call, __FILE__, __LINE__);      \
    } while (0)

#define VT_CUDNN_TRY(cu, call)                                                 \
    do {                                                                       \
        cudnnStatus_t vt_s_ = (call);                                          \
        if (vt_s_ != CUDNN_STATUS_SUCCESS)                                     \
            return vt__cudnn_fail((cu), vt_s_, #call, __FILE__, __LINE__);     \
    } while (0)

#define VT_CUBLAS_TRY(cu, call)                                                \
    do {                                                                       \
        cublasStatus_t vt_s_ = (call);                                         \
        if (vt_s_ != CUBLAS_STATUS_SUCCESS)                                    \
            return vt__cublas_fail((cu), vt_s_, #call, __FILE__, __LINE__);    \
    } while (0)

#define VT__TRY(expr)                                                          \
    do {                                                                       \
        int vt_rc_ = (expr);                                                   \
        if (vt_rc_ < 0)                                                        \
            return vt_rc_;                                                     \
    } while (0)

/* Every operation starts here: after a sticky error nothing runs again.
 * The current device is per host thread, and the backend may have been made
 * on another thread than the one using it: select it (device 0 is every
 * thread's default). */
#define VT__ENTER(cu)                                                          \
    do {                                                                       \
        if ((cu)->sticky)                                                      \
            return vt_error_set(VT_EDEVLOST,                                   \
                                "an earlier CUDA error left the context unusable (%s): " \
                                "the process must restart",                    \
                                (cu)->sticky_msg);                             \
        if ((cu)->device != 0)                                                 \
            VT_CUDA_TRY((cu), cudaSetDevice((cu)->device));                    \
    } while (0)

/* Recorded sequences (defined with vt_record_begin, below). */
static int vt__replay_skip(vt_cuda *cu);
static int vt__rec_refuse(vt_cuda *cu, const char *what);
static int vt__capture_patch(vt_cuda *cu, const vt__patch *want);
static int vt__replay_patch(vt_cuda *cu, const vt__patch *want);
static int vt__rec_softmax_xent(vt_cuda *cu, const vt_tensor *logits, const vt_tensor *labels,
                                vt_tensor *dlogits, float grad_scale, vt_tensor *probs,
                                vt_xent_sums *sums);

/* An operation that a recorded sequence may contain: in a replay it only
 * counts (its work is in the graph). */
#define VT__OP(cu)                                                             \
    do {                                                                       \
        VT__ENTER(cu);                                                         \
        if ((cu)->rec_mode == VT__REC_REPLAY)                                  \
            return vt__replay_skip(cu);                                        \
        if ((cu)->rec_mode == VT__REC_CAPTURE)                                 \
            (cu)->rec->nops++;                                                 \
    } while (0)

/* An operation that moves data between host and device: refused inside a
 * recorded sequence. */
#define VT__HOST_OP(cu, what)                                                  \
    do {                                                                       \
        VT__ENTER(cu);                                                         \
        if ((cu)->rec_mode != VT__REC_NONE)                                    \
            return vt__rec_refuse((cu), (what));                               \
    } while (0)

/* A cuDNN status meaning "this configuration is not supported" rather than
 * a failure of the device or a mistake in our arguments (the BAD_PARAM codes
 * named below always mean the latter: they fail loudly, not fall back).
 * Inside a recording nothing counts as unsupported: the call ran outside one
 * before, so a refusal there is the capture's doing; it fails the recording
 * and the plain rerun of the step decides, instead of a plan switching to
 * the reference kernel for good. */
static int vt__dnn_unsupported(const vt_cuda *cu, cudnnStatus_t st)
{
    if (cu->rec_mode == VT__REC_CAPTURE)
        return 0;
    switch (st) {
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER:
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER:
    case CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH:
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH:
        return 0;
    default:
        return st >= 2000 && st < 4000;
    }
}

/* ---- small helpers --------------------------------------------------------- */

static vt_cuk_type vt__kt(vt_dtype d) { return d == VT_BF16 ? VT_CUK_BF16 : VT_CUK_F32; }
static cudnnDataType_t vt__dnn_type(vt_dtype d)
{
    return d == VT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}
static cudaDataType vt__blas_type(vt_dtype d) { return d == VT_BF16 ? CUDA_R_16BF : CUDA_R_32F; }
static const char *vt__dt_name(vt_dtype d) { return d == VT_BF16 ? "bf16" : "f32"; }

/* Logs that cuDNN refused a convolution of plan-like shape (st, with cuDNN's
 * own explanation) and what runs instead.  Call right after the refusal. */
static void vt__dnn_refused(cudnnStatus_t st, const char *op, int n, int h, int w, int c, int k,
                            vt_dtype dt, const char *instead)
{
    char detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    (void)cudaGetLastError();
    vt_log_warn("cuda: cuDNN refused %s n%d %dx%d c%d k%d %s (%s%s%s); %s", op, n, h, w, c, k,
                vt__dt_name(dt), cudnnGetErrorString(st), detail[0] ? ": " : "", detail, instead);
}

static void vt__mem_add(vt_cuda *cu, size_t bytes)
{
    cu->be->mem_in_use += bytes;
    if (cu->be->mem_in_use > cu->be->mem_peak)
        cu->be->mem_peak = cu->be->mem_in_use;
}

static void vt__mem_sub(vt_cuda *cu, size_t bytes) { cu->be->mem_in_use -= bytes; }

static int vt__env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* Room for one more element in the growable array *a (*cap allocated, n in
 * use), doubling it when full. */
template <typename T> static int vt__room(T **a, int *cap, int n)
{
    int c = *cap ? 2 * *cap : 16;
    T *grown;
    if (n < *cap)
        return 0;
    if (!(grown = (T *)realloc(*a, (size_t)c * sizeof **a)))
        return vt_error_set(VT_ENOMEM, "out of host memory");
    *a = grown;
    *cap = c;
    return 0;
}

/* Weights, biases and their gradients are f32 masters on this backend. */
static int vt__need_f32(const vt_tensor *t, const char *op, const char *arg)
{
    if (t->dtype != VT_F32)
        return vt_error_set(VT_EUNSUPPORTED, "%s: %s must be f32 on the cuda backend", op, arg);
    return 0;
}

/* cudaMalloc with an out-of-memory message that gives the sizes. */
static int vt__dmalloc(vt_cuda *cu, void **p, size_t bytes, const char *what)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaSuccess)
        return 0;
    *p = NULL;
    if (e == cudaErrorMemoryAllocation) {
        size_t fr = 0, tot = 0;
        (void)cudaGetLastError();
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess)
            (void)cudaGetLastError();
        return vt_error_set(VT_EDEVOOM,
                            "out of device memory allocating %zu bytes (%.1f MiB) for %s; "
                            "%.1f MiB free of %.1f MiB",
                            bytes, bytes / VT__MIB, what, fr / VT__MIB, tot / VT__MIB);
    }
    return vt__cuda_fail(cu, e, "cudaMalloc", __FILE__, __LINE__);
}

/* Frees device memory (host: pinned host memory) after the stream has
 * finished with it.  Inside an open sequence the sequence is spoilt (a graph
 * may use the memory) and the memory is freed when it ends; if that list
 * cannot grow, the memory is leaked with a warning rather than the capture
 * broken. */
static void vt__free_any(vt_cuda *cu, void *p, int host)
{
    if (!p)
        return;
    if (cu->rec_mode != VT__REC_NONE) {
        if (cu->rec)
            cu->rec->bad = 1;
        if (vt__room(&cu->late_free, &cu->cap_late_free, cu->nlate_free) < 0) {
            vt_log_warn("cuda: out of host memory: leaking a buffer freed in a recording");
            return;
        }
        cu->late_free[cu->nlate_free].p = p;
        cu->late_free[cu->nlate_free++].host = host;
        return;
    }
    if (cudaStreamSynchronize(cu->stream) != cudaSuccess ||
        (host ? cudaFreeHost(p) : cudaFree(p)) != cudaSuccess)
        (void)cudaGetLastError();
}

static void vt__dfree(vt_cuda *cu, void *p) { vt__free_any(cu, p, 0); }

/* Frees what vt__free_any set aside during a sequence (none open now). */
static void vt__late_free_drain(vt_cuda *cu)
{
    for (int i = 0; i < cu->nlate_free; i++)
        vt__free_any(cu, cu->late_free[i].p, cu->late_free[i].host);
    cu->nlate_free = 0;
}

/* Refuses, while a sequence is being captured, work that would allocate,
 * free or wait (it would break the capture, or leak what it frees): the
 * capture then fails cleanly and the step runs plainly. */
static int vt__no_capture(vt_cuda *cu, const char *what)
{
    if (cu->rec_mode != VT__REC_CAPTURE)
        return 0;
    return vt_error_set(VT_EINVAL, "%s inside a captured sequence", what);
}

/* Frees scratch slot `slot` (it is made again when next needed).  Only the
 * slots that operations inside a recorded sequence use make recordings
 * stale: the staging slots serve host transfers, which no sequence holds
 * (and which grow with each batch's largest decoded image set). */
static void vt__tmp_release(vt_cuda *cu, int slot)
{
    if (!cu->tmp[slot])
        return;
    if (slot != VT__T_STAGE && slot != VT__T_BOXES)
        cu->gen++;
    vt__dfree(cu, cu->tmp[slot]);
    vt__mem_sub(cu, cu->tmp_size[slot]);
    cu->tmp[slot] = NULL;
    cu->tmp_size[slot] = 0;
}

/* Scratch slot `slot` with at least `bytes`, zero-filled when (re)made so
 * that it never holds NaN patterns. */
static int vt__tmp(vt_cuda *cu, int slot, size_t bytes, void **out)
{
    if (cu->tmp_size[slot] < bytes) {
        size_t want = bytes + bytes / 8;
        VT__TRY(vt__no_capture(cu, "growing backend scratch"));
        want = (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
        vt__tmp_release(cu, slot);
        VT__TRY(vt__dmalloc(cu, &cu->tmp[slot], want, "backend scratch"));
        cu->tmp_size[slot] = want;
        vt__mem_add(cu, want);
        VT_CUDA_TRY(cu, cudaMemsetAsync(cu->tmp[slot], 0, want, cu->stream));
    }
    *out = cu->tmp[slot];
    return 0;
}

/* The cuDNN workspace holds at least `bytes`. */
static int vt__ws_reserve(vt_cuda *cu, size_t bytes)
{
    if (bytes <= cu->ws_size)
        return 0;
    VT__TRY(vt__no_capture(cu, "growing the convolution workspace"));
    bytes = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (cu->ws) {
        cu->gen++;
        vt__dfree(cu, cu->ws);
        vt__mem_sub(cu, cu->ws_size);
        cu->ws = NULL;
        cu->ws_size = 0;
    }
    VT__TRY(vt__dmalloc(cu, &cu->ws, bytes, "the convolution workspace"));
    cu->ws_size = bytes;
    vt__mem_add(cu, bytes);
    return 0;
}

/* Host -> device copy of caller memory.  From pageable memory the copy has
 * consumed the source when cudaMemcpyAsync returns; from pinned memory it
 * has not, so then wait: the caller may reuse its buffer on return. */
static int vt__h2d(vt_cuda *cu, void *dst, const void *src, size_t bytes)
{
    cudaPointerAttributes a;
    int pinned = 0;
    if (cudaPointerGetAttributes(&a, src) == cudaSuccess)
        pinned = a.type == cudaMemoryTypeHost || a.type == cudaMemoryTypeManaged;
    else
        (void)cudaGetLastError();
    VT_CUDA_TRY(cu, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
    if (pinned)
        VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return 0;
}

/* Whether [src, src + bytes) lies in one of host_alloc's buffers. */
static int vt__in_hbuf(const vt_cuda *cu, const void *src, size_t bytes)
{
    const char *s = (const char *)src;
    for (int i = 0; i < cu->nhbuf; i++)
        if (s >= cu->hbuf[i].p && bytes <= cu->hbuf[i].bytes &&
            (size_t)(s - cu->hbuf[i].p) <= cu->hbuf[i].bytes - bytes)
            return 1;
    return 0;
}

/* Host -> device copy of an image batch: from a host_alloc buffer it stays
 * in flight (the caller fences before rewriting the buffer), from anywhere
 * else it is vt__h2d. */
static int vt__h2d_images(vt_cuda *cu, void *dst, const void *src, size_t bytes)
{
    if (!vt__in_hbuf(cu, src, bytes))
        return vt__h2d(cu, dst, src, bytes);
    VT_CUDA_TRY(cu, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
    VT_CUDA_TRY(cu, cudaEventRecord(cu->uploaded, cu->stream));
    cu->upload_pending = 1;
    return 0;
}

static int vt__cuda_host_fence(vt_backend *be)
{
    vt_cuda *cu = vt__cu(be);
    VT__ENTER(cu);
    if (cu->upload_pending) {
        VT_CUDA_TRY(cu, cudaEventSynchronize(cu->uploaded));
        cu->upload_pending = 0;
    }
    return 0;
}

static void *vt__cuda_host_alloc(vt_backend *be, size_t bytes)
{
    vt_cuda *cu = vt__cu(be);
    void *p = NULL;
    if (cu->sticky)
        return NULL;
    if (vt__room(&cu->hbuf, &cu->cap_hbuf, cu->nhbuf) < 0)
        return NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError(); /* no page-locked memory left: the caller mallocs */
        return NULL;
    }
    cu->hbuf[cu->nhbuf].p = (char *)p;
    cu->hbuf[cu->nhbuf].bytes = bytes;
    cu->nhbuf++;
    return p;
}

static void vt__cuda_host_free(vt_backend *be, void *p)
{
    vt_cuda *cu = vt__cu(be);
    for (int i = 0; i < cu->nhbuf; i++) {
        if (cu->hbuf[i].p != (char *)p)
            continue;
        if (vt__cuda_host_fence(be) < 0) /* an upload may still read it */
            (void)cudaGetLastError();
        cudaFreeHost(p);
        (void)cudaGetLastError();
        cu->hbuf[i] = cu->hbuf[--cu->nhbuf];
        return;
    }
}

/* ---- bf16 shadows and dtype plumbing --------------------------------------- */

/* Whether a recording may hold t's memory or its bf16 copy's: t (a view:
 * its parent) was allocated before the latest capture began.  Memory
 * allocated since is in no graph, allocations being refused during a
 * capture, so freeing it or writing it from the host (a prediction's
 * network between a job's steps) leaves the recordings as they are. */
static int vt__maybe_recorded(const vt_cuda *cu, const vt_tensor *t)
{
    return (t->parent ? t->parent : t)->seq <= cu->captured_seq;
}

static void vt__shadow_free(vt_cuda *cu, vt_tensor *t)
{
    vt__shadow *s = (vt__shadow *)t->shadow;
    if (!s)
        return;
    if (s->ptr) {
        vt__dfree(cu, s->ptr);
        vt__mem_sub(cu, s->bytes);
        if (vt__maybe_recorded(cu, t))
            cu->gen++;
    }
    free(s);
    t->shadow = NULL;
}

/* Notes, while a sequence is captured, that shadow s is about to be marked
 * fresh by work that has only been captured, not run. */
static int vt__touch(vt_cuda *cu, vt__shadow *s)
{
    if (cu->rec_mode != VT__REC_CAPTURE)
        return 0;
    VT__TRY(vt__room(&cu->touched, &cu->cap_touched, cu->ntouched));
    cu->touched[cu->ntouched++] = s;
    return 0;
}

/* A write from the host into t: when t has a bf16 copy, recordings that
 * read that copy would replay with a stale one, so they all become stale. */
static void vt__host_wrote(vt_cuda *cu, const vt_tensor *t)
{
    if ((t->shadow || (t->parent && t->parent->shadow)) && vt__maybe_recorded(cu, t))
        cu->gen++;
}

/* The bf16 copy of f32 tensor t, made or refreshed when t->version moved.
 * With cpad != 0, t is (K,3,3,C) and the copy (K,3,3,cpad), zero channels
 * appended.  The shadow is a cache of t's value, so t stays logically const.
 *
 * Recordings: a copy found fresh while capturing is not refreshed by the
 * graph, which then reads it as it is at each replay.  That is right for
 * what a step reads this way: parameters (whose copies the recorded SGD
 * update rewrites; host writes to them make recordings stale, see
 * vt__host_wrote) and tensors written earlier in the same step (whose
 * refresh is captured).  An f32 tensor read through its copy in a recorded
 * step and written between replays by an operation outside the recording
 * would need that write to bump cu->gen too. */
static int vt__bf16_copy(vt_cuda *cu, const vt_tensor *tc, int cpad, const void **out)
{
    vt_tensor *t = (vt_tensor *)tc;
    vt__shadow *s = (vt__shadow *)t->shadow;
    int c = t->dims[t->ndim - 1];
    size_t elems = cpad ? t->numel / (size_t)c * (size_t)cpad : t->numel;

    if (!s) {
        if (!(s = (vt__shadow *)calloc(1, sizeof *s)))
            return vt_error_set(VT_ENOMEM, "out of host memory");
        t->shadow = s;
    }
    if (s->valid && s->version == t->version && s->cpad == cpad && s->elems == elems) {
        *out = s->ptr;
        return 0;
    }
    if (s->bytes < elems * 2) {
        VT__TRY(vt__no_capture(cu, "allocating a bf16 copy"));
        if (s->ptr) {
            cu->gen++;
            vt__dfree(cu, s->ptr);
            vt__mem_sub(cu, s->bytes);
            s->ptr = NULL;
            s->bytes = 0;
        }
        s->valid = 0;
        VT__TRY(vt__dmalloc(cu, &s->ptr, elems * 2, "a bf16 copy of weights"));
        s->bytes = elems * 2;
        vt__mem_add(cu, s->bytes);
    }
    if (s->valid && (s->cpad != cpad || s->elems != elems))
        cu->gen++; /* the same buffer in another layout: a graph may read the old one */
    if (cpad)
        VT_CUDA_TRY(cu, vt_cuk_pad_channels(cu->stream, t->data, VT_CUK_F32, t->numel / (size_t)c,
                                            c, cpad, s->ptr, VT_CUK_BF16));
    else
        VT_CUDA_TRY(cu, vt_cuk_convert(cu->stream, s->ptr, VT_CUK_BF16, t->data, VT_CUK_F32,
                                       t->numel));
    VT__TRY(vt__touch(cu, s));
    s->version = t->version;
    s->valid = 1;
    s->cpad = cpad;
    s->elems = elems;
    *out = s->ptr;
    return 0;
}

/* Activation t as an operand of compute dtype cd: itself, its bf16 shadow,
 * or an f32 conversion in scratch slot `slot`. */
static int vt__act_in(vt_cuda *cu, const vt_tensor *t, vt_dtype cd, int slot, const void **out)
{
    void *p = NULL;
    if (t->dtype == cd) {
        *out = t->data;
        return 0;
    }
    if (cd == VT_BF16)
        return vt__bf16_copy(cu, t, 0, out);
    VT__TRY(vt__tmp(cu, slot, t->numel * 4, &p));
    VT_CUDA_TRY(cu, vt_cuk_convert(cu->stream, p, VT_CUK_F32, t->data, VT_CUK_BF16, t->numel));
    *out = p;
    return 0;
}

/* Where an output of compute dtype cd is written: t itself, or scratch that
 * vt__act_out_done converts into t. */
static int vt__act_out(vt_cuda *cu, vt_tensor *t, vt_dtype cd, void **out)
{
    if (t->dtype == cd) {
        *out = t->data;
        return 0;
    }
    return vt__tmp(cu, VT__T_OUT, t->numel * vt_dtype_size(cd), out);
}

static int vt__act_out_done(vt_cuda *cu, vt_tensor *t, vt_dtype cd, void *p)
{
    if (p != t->data)
        VT_CUDA_TRY(cu, vt_cuk_convert(cu->stream, t->data, vt__kt(t->dtype), p, vt__kt(cd),
                                       t->numel));
    return 0;
}

/* db[j] = sum of the rows of a (rows, cols). */
static int vt__colsum(vt_cuda *cu, const vt_tensor *a, size_t rows, int cols, float *out)
{
    void *part = NULL;
    VT__TRY(vt__tmp(cu, VT__T_PART, vt_cuk_colsum_scratch(rows, cols) * sizeof(float), &part));
    VT_CUDA_TRY(cu, vt_cuk_colsum(cu->stream, a->data, vt__kt(a->dtype), rows, cols,
                                  (float *)part, out));
    return 0;
}

/* ---- convolution plans --------------------------------------------------- */

static void vt__conv_plan_free(vt__conv_plan *p)
{
    if (!p)
        return;
    if (p->xd)
        cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd)
        cudnnDestroyTensorDescriptor(p->yd);
    if (p->bd_dt)
        cudnnDestroyTensorDescriptor(p->bd_dt);
    if (p->bd_f32)
        cudnnDestroyTensorDescriptor(p->bd_f32);
    if (p->wd)
        cudnnDestroyFilterDescriptor(p->wd);
    if (p->cd)
        cudnnDestroyConvolutionDescriptor(p->cd);
    free(p);
}

static int vt__conv_plan_init(vt_cuda *cu, vt__conv_plan *p)
{
    cudnnDataType_t t = vt__dnn_type(p->dt);
    cudnnMathType_t math = p->dt == VT_BF16 ? CUDNN_TENSOR_OP_MATH
                           : cu->tf32       ? CUDNN_DEFAULT_MATH
                                            : CUDNN_FMA_MATH;
    VT_CUDNN_TRY(cu, cudnnCreateTensorDescriptor(&p->xd));
    VT_CUDNN_TRY(cu, cudnnCreateTensorDescriptor(&p->yd));
    VT_CUDNN_TRY(cu, cudnnCreateTensorDescriptor(&p->bd_dt));
    VT_CUDNN_TRY(cu, cudnnCreateTensorDescriptor(&p->bd_f32));
    VT_CUDNN_TRY(cu, cudnnCreateFilterDescriptor(&p->wd));
    VT_CUDNN_TRY(cu, cudnnCreateConvolutionDescriptor(&p->cd));
    VT_CUDNN_TRY(cu, cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, t, p->n, p->c, p->h, p->w));
    VT_CUDNN_TRY(cu, cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NHWC, t, p->n, p->k, p->h, p->w));
    VT_CUDNN_TRY(cu, cudnnSetTensor4dDescriptor(p->bd_dt, CUDNN_TENSOR_NHWC, t, 1, p->k, 1, 1));
    VT_CUDNN_TRY(cu, cudnnSetTensor4dDescriptor(p->bd_f32, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1,
                                                p->k, 1, 1));
    /* KRSC is cuDNN's NHWC filter layout: (K, R, S, C) */
    VT_CUDNN_TRY(cu, cudnnSetFilter4dDescriptor(p->wd, t, CUDNN_TENSOR_NHWC, p->k, p->c, 3, 3));
    VT_CUDNN_TRY(cu, cudnnSetConvolution2dDescriptor(p->cd, 1, 1, 1, 1, 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    VT_CUDNN_TRY(cu, cudnnSetConvolutionMathType(p->cd, math));
    return 0;
}

/* The plan for this configuration, made (without an algorithm) if new. */
static int vt__conv_plan_get(vt_cuda *cu, int kind, int n, int h, int w, int c, int k,
                             vt_dtype dt, vt__conv_plan **out)
{
    vt__conv_plan *p;
    int rc;
    for (int i = 0; i < cu->nplans; i++) {
        p = cu->plans[i];
        if (p->kind == kind && p->n == n && p->h == h && p->w == w && p->c == c && p->k == k &&
            p->dt == dt) {
            *out = p;
            return 0;
        }
    }
    VT__TRY(vt__room(&cu->plans, &cu->cap_plans, cu->nplans));
    if (!(p = (vt__conv_plan *)calloc(1, sizeof *p)))
        return vt_error_set(VT_ENOMEM, "out of host memory");
    p->kind = kind;
    p->n = n;
    p->h = h;
    p->w = w;
    p->c = c;
    p->k = k;
    p->dt = dt;
    p->algo = -1;
    p->fused = cu->fuse ? -1 : 0;
    p->own = kind == VT__FWD ? -1 : 0;
    if ((rc = vt__conv_plan_init(cu, p)) < 0) {
        vt__conv_plan_free(p);
        return vt_error_wrap(rc, "convolution descriptors");
    }
    cu->plans[cu->nplans++] = p;
    *out = p;
    return 0;
}

/* Workspace that algorithm algo of plan p needs with its descriptors as
 * they stand (math type included), into *sz; cuDNN's status. */
static cudnnStatus_t vt__ws_size(vt_cuda *cu, const vt__conv_plan *p, int algo, size_t *sz)
{
    *sz = 0;
    if (p->kind == VT__FWD)
        return cudnnGetConvolutionForwardWorkspaceSize(cu->dnn, p->xd, p->wd, p->cd, p->yd,
                                                       (cudnnConvolutionFwdAlgo_t)algo, sz);
    if (p->kind == VT__BWD_DATA)
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            cu->dnn, p->wd, p->yd, p->cd, p->xd, (cudnnConvolutionBwdDataAlgo_t)algo, sz);
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(
        cu->dnn, p->xd, p->yd, p->cd, p->wd, (cudnnConvolutionBwdFilterAlgo_t)algo, sz);
}

/* cuDNN's heuristic ranking of plan p's algorithms, at most max, into the
 * list of its kind (pf, pd or pw); *n entries.  cuDNN's status. */
static cudnnStatus_t vt__heuristics(vt_cuda *cu, const vt__conv_plan *p, int max, int *n,
                                    cudnnConvolutionFwdAlgoPerf_t *pf,
                                    cudnnConvolutionBwdDataAlgoPerf_t *pd,
                                    cudnnConvolutionBwdFilterAlgoPerf_t *pw)
{
    *n = 0;
    if (p->kind == VT__FWD)
        return cudnnGetConvolutionForwardAlgorithm_v7(cu->dnn, p->xd, p->wd, p->cd, p->yd, max,
                                                      n, pf);
    if (p->kind == VT__BWD_DATA)
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(cu->dnn, p->wd, p->yd, p->cd, p->xd,
                                                           max, n, pd);
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(cu->dnn, p->xd, p->yd, p->cd, p->wd, max,
                                                         n, pw);
}

/* Whether entry e of a cuDNN perf list may be used for plan p (its
 * workspace aside). */
template <typename P>
static int vt__usable(const vt_cuda *cu, const vt__conv_plan *p, const P *e)
{
    if (e->status != CUDNN_STATUS_SUCCESS)
        return 0;
    if (e->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        return 0; /* would down-convert our operands to fp16 */
    if (p->dt == VT_F32 && !cu->tf32 && e->mathType == CUDNN_TENSOR_OP_MATH)
        return 0;
    return !cu->deterministic || e->determinism == CUDNN_DETERMINISTIC;
}

/* Best usable entry of a cuDNN perf list (sorted fastest first). */
template <typename P>
static int vt__pick(const vt_cuda *cu, const vt__conv_plan *p, const P *perf, int n, size_t limit,
                    P *best)
{
    for (int i = 0; i < n; i++)
        if (perf[i].memory <= limit && vt__usable(cu, p, &perf[i])) {
            *best = perf[i];
            return 1;
        }
    return 0;
}

/* Largest workspace, at most limit, among the usable entries of a cuDNN
 * perf list. */
template <typename P>
static size_t vt__most_ws(const vt_cuda *cu, const vt__conv_plan *p, const P *perf, int n,
                          size_t limit)
{
    size_t most = 0;
    for (int i = 0; i < n; i++)
        if (perf[i].memory <= limit && perf[i].memory > most && vt__usable(cu, p, &perf[i]))
            most = perf[i].memory;
    return most;
}

/* Entries of a timed search's perf list left untimed for want of workspace. */
template <typename P>
static int vt__untimed(const P *perf, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += perf[i].status == CUDNN_STATUS_ALLOC_FAILED;
    return k;
}

/* Bytes of the buffer for plan p's timed search: the largest workspace, at
 * most limit, that one of its usable algorithms needs, rounded up to a
 * MiB.  (As PyTorch sizes its own: a search on a shared device takes what
 * the candidates can use, not half of what is free.)  cuDNN is asked per
 * algorithm under each math type the search may time (a tensor-op plan
 * also times the default math, and the other way round), and its
 * heuristics are asked too. */
static size_t vt__search_bytes(vt_cuda *cu, const vt__conv_plan *p, size_t limit)
{
    enum { MAXA = 16 };
    static const int count[] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};
    cudnnConvolutionFwdAlgoPerf_t pf[MAXA];
    cudnnConvolutionBwdDataAlgoPerf_t pd[MAXA];
    cudnnConvolutionBwdFilterAlgoPerf_t pw[MAXA];
    cudnnMathType_t own = CUDNN_DEFAULT_MATH, maths[2];
    size_t most = 0, sz, h = 0, mib = (size_t)1 << 20;
    int n = 0, nmath = 1;

    if (cudnnGetConvolutionMathType(p->cd, &own) != CUDNN_STATUS_SUCCESS)
        return limit & ~(mib - 1); /* (cannot happen with a made plan: size as before) */
    maths[0] = own;
    if (own == CUDNN_TENSOR_OP_MATH || own == CUDNN_DEFAULT_MATH)
        maths[nmath++] = own == CUDNN_TENSOR_OP_MATH ? CUDNN_DEFAULT_MATH : CUDNN_TENSOR_OP_MATH;
    if (p->dt == VT_F32 && !cu->tf32)
        nmath = 1; /* (FMA: tensor ops are not ours to time) */
    for (int m = 0; m < nmath; m++) {
        if (cudnnSetConvolutionMathType(p->cd, maths[m]) != CUDNN_STATUS_SUCCESS)
            continue;
        for (int a = 0; a < count[p->kind]; a++) {
            if (vt__ws_size(cu, p, a, &sz) != CUDNN_STATUS_SUCCESS)
                (void)cudaGetLastError(); /* (an algorithm this shape does not support) */
            else if (sz <= limit && sz > most)
                most = sz;
        }
    }
    if (cudnnSetConvolutionMathType(p->cd, own) != CUDNN_STATUS_SUCCESS)
        return limit & ~(mib - 1);
    if (vt__heuristics(cu, p, MAXA, &n, pf, pd, pw) != CUDNN_STATUS_SUCCESS)
        (void)cudaGetLastError();
    else
        h = p->kind == VT__FWD        ? vt__most_ws(cu, p, pf, n, limit)
            : p->kind == VT__BWD_DATA ? vt__most_ws(cu, p, pd, n, limit)
                                      : vt__most_ws(cu, p, pw, n, limit);
    most = h > most ? h : most;
    most = (most + mib - 1) & ~(mib - 1);
    return most < limit ? most : limit & ~(mib - 1);
}

/* Runs cuDNN's timed search (or its heuristics) for plan p on the real
 * operand buffers a, b and output c (fwd: x, w, y; bwd_data: dy, w, dx;
 * bwd_filter: x, dy, dw) and records the algorithm and its workspace. */
static int vt__conv_search(vt_cuda *cu, vt__conv_plan *p, const void *a, const void *b, void *c)
{
    enum { MAXA = 16 };
    size_t limit = cu->ws_limit, fr = 0, tot = 0, bufsz = 0, want = 0, need = 0;
    void *buf = NULL;
    int found = 0, n = 0, algo = -1, untimed = 0;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
    float ms = -1.0f;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    cudnnConvolutionFwdAlgoPerf_t pf[MAXA], bf;
    cudnnConvolutionBwdDataAlgoPerf_t pd[MAXA], bd;
    cudnnConvolutionBwdFilterAlgoPerf_t pw[MAXA], bw;
    const char *how = "timed";

    VT__TRY(vt__no_capture(cu, "choosing a convolution algorithm"));
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        if (limit > fr / 2)
            limit = fr / 2;
    } else {
        (void)cudaGetLastError();
    }
    if (cu->find) {
        VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
        /* (what cannot be had is halved: the search then skips the
         * algorithms that need more) */
        want = vt__search_bytes(cu, p, limit);
        for (bufsz = want; bufsz > 0; bufsz /= 2) {
            if (cudaMalloc(&buf, bufsz) == cudaSuccess)
                break;
            (void)cudaGetLastError();
            buf = NULL;
            if (bufsz < ((size_t)2 << 20))
                bufsz = 0;
        }
        vt__mem_add(cu, bufsz);
        if (p->kind == VT__FWD) {
            st = cudnnFindConvolutionForwardAlgorithmEx(cu->dnn, p->xd, a, p->wd, b, p->cd, p->yd, c,
                                                        MAXA, &n, pf, buf, bufsz);
            if (st == CUDNN_STATUS_SUCCESS && (found = vt__pick(cu, p, pf, n, bufsz, &bf)))
                algo = bf.algo, need = bf.memory, math = bf.mathType, ms = bf.time;
            untimed = st == CUDNN_STATUS_SUCCESS ? vt__untimed(pf, n) : 0;
        } else if (p->kind == VT__BWD_DATA) {
            st = cudnnFindConvolutionBackwardDataAlgorithmEx(cu->dnn, p->wd, b, p->yd, a, p->cd,
                                                             p->xd, c, MAXA, &n, pd, buf, bufsz);
            if (st == CUDNN_STATUS_SUCCESS && (found = vt__pick(cu, p, pd, n, bufsz, &bd)))
                algo = bd.algo, need = bd.memory, math = bd.mathType, ms = bd.time;
            untimed = st == CUDNN_STATUS_SUCCESS ? vt__untimed(pd, n) : 0;
        } else {
            st = cudnnFindConvolutionBackwardFilterAlgorithmEx(cu->dnn, p->xd, a, p->yd, b, p->cd,
                                                               p->wd, c, MAXA, &n, pw, buf, bufsz);
            if (st == CUDNN_STATUS_SUCCESS && (found = vt__pick(cu, p, pw, n, bufsz, &bw)))
                algo = bw.algo, need = bw.memory, math = bw.mathType, ms = bw.time;
            untimed = st == CUDNN_STATUS_SUCCESS ? vt__untimed(pw, n) : 0;
        }
        /* A buffer cut short (the device is full) leaves algorithms out
         * of the timing: said, as is any that wanted more than was sized. */
        if (bufsz < want || untimed)
            vt_log(bufsz < want ? VT_LOG_WARN : cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
                   "cuda: conv %s n%d %dx%d c%d k%d %s timed with a %.0f MiB buffer of the %.0f "
                   "MiB wanted; %d algorithm%s left untimed for want of workspace",
                   vt__kind_name[p->kind], p->n, p->h, p->w, p->c, p->k, vt__dt_name(p->dt),
                   bufsz / VT__MIB, want / VT__MIB, untimed, untimed == 1 ? "" : "s");
        if (cudaStreamSynchronize(cu->stream) != cudaSuccess)
            (void)cudaGetLastError();
        if (buf && cudaFree(buf) != cudaSuccess)
            (void)cudaGetLastError();
        vt__mem_sub(cu, bufsz);
        if (st != CUDNN_STATUS_SUCCESS) {
            char detail[256] = "";
            cudnnGetLastErrorString(detail, sizeof detail);
            int rc;
            if (st >= 5000 && st < 6000 &&
                vt__sticky_behind(cu, "cudnnFindConvolution*AlgorithmEx", __FILE__, __LINE__, &rc))
                return rc;
            (void)cudaGetLastError();
            vt_log_warn("cuda: timing conv %s algorithms (n%d %dx%d c%d k%d %s) failed: %s %s; "
                        "using cuDNN's heuristics",
                        vt__kind_name[p->kind], p->n, p->h, p->w, p->c, p->k, vt__dt_name(p->dt),
                        cudnnGetErrorString(st), detail);
        }
    }
    if (!found) {
        how = "heuristic";
        if (vt__heuristics(cu, p, MAXA, &n, pf, pd, pw) != CUDNN_STATUS_SUCCESS)
            (void)cudaGetLastError();
        else if (p->kind == VT__FWD && (found = vt__pick(cu, p, pf, n, limit, &bf)))
            algo = bf.algo, need = bf.memory, math = bf.mathType;
        else if (p->kind == VT__BWD_DATA && (found = vt__pick(cu, p, pd, n, limit, &bd)))
            algo = bd.algo, need = bd.memory, math = bd.mathType;
        else if (p->kind == VT__BWD_FILTER && (found = vt__pick(cu, p, pw, n, limit, &bw)))
            algo = bw.algo, need = bw.memory, math = bw.mathType;
    }
    p->searched = 1;
    if (!found) {
        p->naive = 1;
        vt_log_warn("cuda: no cuDNN algorithm for conv %s n%d %dx%d c%d k%d %s; using the "
                    "(slow) reference kernel",
                    vt__kind_name[p->kind], p->n, p->h, p->w, p->c, p->k, vt__dt_name(p->dt));
        return 0;
    }
    if (!(p->dt == VT_F32 && !cu->tf32))
        VT_CUDNN_TRY(cu, cudnnSetConvolutionMathType(p->cd, math));
    {
        size_t sz = 0;
        cudnnStatus_t s2 = vt__ws_size(cu, p, algo, &sz);
        if (s2 == CUDNN_STATUS_SUCCESS && sz > need)
            need = sz;
        else if (s2 != CUDNN_STATUS_SUCCESS)
            (void)cudaGetLastError();
    }
    p->algo = algo;
    p->ws = need;
    vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
           "cuda: conv %s n%d %dx%d c%d k%d %s: algo %d (%s), math %d, workspace %.1f MiB, "
           "%.3f ms",
           vt__kind_name[p->kind], p->n, p->h, p->w, p->c, p->k, vt__dt_name(p->dt), algo, how,
           (int)math, need / VT__MIB, ms);
    return 0;
}

/* ---- convolutions ------------------------------------------------------------ */

static const float vt__one = 1.0f, vt__zero = 0.0f;

static int vt__conv_fwd_ref(vt_cuda *cu, const vt_tensor *x, const vt_tensor *w,
                            const vt_tensor *b, vt_tensor *y, int relu)
{
    VT_CUDA_TRY(cu, vt_cuk_conv_fwd_ref(cu->stream, x->data, vt__kt(x->dtype), (const float *)w->data,
                                        (const float *)b->data, y->data, vt__kt(y->dtype), x->dims[0],
                                        x->dims[1], x->dims[2], x->dims[3], w->dims[0], relu));
    return 0;
}

/* Tries cuDNN's fused convolution + bias + ReLU.  Returns 1 when it ran, 0
 * when cuDNN does not offer it for this plan (remembered), < 0 on error. */
static int vt__conv_fused(vt_cuda *cu, vt__conv_plan *p, const void *xp, const void *wp,
                          const vt_tensor *b, void *yp)
{
    for (int mode = p->fused < 0 ? 1 : p->fused; mode <= 2; mode++) {
        const void *bias = b->data;
        cudnnTensorDescriptor_t bdesc = p->bd_f32;
        cudnnStatus_t st;
        if (mode == 1 && p->dt == VT_BF16) {
            VT__TRY(vt__bf16_copy(cu, b, 0, &bias));
            bdesc = p->bd_dt;
        } else if (mode == 2 && p->dt == VT_F32) {
            break; /* the f32 bias was mode 1 */
        }
        st = cudnnConvolutionBiasActivationForward(
            cu->dnn, &vt__one, p->xd, xp, p->wd, wp, p->cd, (cudnnConvolutionFwdAlgo_t)p->algo,
            cu->ws, cu->ws_size, &vt__zero, p->yd, yp, bdesc, bias, cu->relu, p->yd, yp);
        if (st == CUDNN_STATUS_SUCCESS) {
            if (p->fused < 0)
                vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
                       "cuda: conv n%d %dx%d c%d k%d %s: fused bias+ReLU, %s bias", p->n, p->h,
                       p->w, p->c, p->k, vt__dt_name(p->dt), mode == 1 ? vt__dt_name(p->dt) : "f32");
            p->fused = mode;
            return 1;
        }
        /* Once fused has worked for this plan, a failure is a failure.  On
         * the first try anything but a dead device or no memory only means
         * no fusion here (cuDNN 9's runtime-compiled engines can fail with
         * 4000-range statuses where the plain convolution works). */
        int rc;
        /* (inside a recording a failure is the capture's doing, not the
         * plan's: it fails the recording, see vt__dnn_unsupported) */
        if (p->fused > 0 || st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
            cu->rec_mode == VT__REC_CAPTURE)
            return vt__cudnn_fail(cu, st, "cudnnConvolutionBiasActivationForward", __FILE__,
                                  __LINE__);
        if (st >= 5000 && st < 6000 &&
            vt__sticky_behind(cu, "cudnnConvolutionBiasActivationForward", __FILE__, __LINE__,
                              &rc))
            return rc;
        if (!vt__dnn_unsupported(cu, st)) {
            vt__dnn_refused(st, "fused conv+bias+ReLU", p->n, p->h, p->w, p->c, p->k, p->dt,
                            "using the separate bias+ReLU pass");
            break;
        }
        (void)cudaGetLastError();
    }
    p->fused = 0;
    vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
           "cuda: conv n%d %dx%d c%d k%d %s: no fused bias+ReLU in cuDNN, separate pass", p->n,
           p->h, p->w, p->c, p->k, vt__dt_name(p->dt));
    return 0;
}

/* The convolution of plan p through cuDNN: channels padded (cp != C), the
 * algorithm searched on first use, bias and ReLU fused where cuDNN can. */
static int vt__conv_fwd_dnn(vt_cuda *cu, vt__conv_plan *p, const vt_tensor *x,
                            const vt_tensor *w, const vt_tensor *b, vt_tensor *y, int relu)
{
    int N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], K = w->dims[0];
    int cp = p->c;
    vt_dtype cd = x->dtype;
    const void *xp = x->data, *wp = w->data;
    void *yp;
    cudnnStatus_t st;

    if (p->naive)
        return vt__conv_fwd_ref(cu, x, w, b, y, relu);
    if (cp != C) {
        void *pad;
        VT__TRY(vt__tmp(cu, VT__T_IN, (size_t)N * H * W * cp * 2, &pad));
        VT_CUDA_TRY(cu, vt_cuk_pad_channels(cu->stream, x->data, VT_CUK_BF16, (size_t)N * H * W, C,
                                            cp, pad, VT_CUK_BF16));
        xp = pad;
    }
    if (cd == VT_BF16)
        VT__TRY(vt__bf16_copy(cu, w, cp != C ? cp : 0, &wp));
    VT__TRY(vt__act_out(cu, y, cd, &yp));
    if (!p->searched) {
        VT__TRY(vt__conv_search(cu, p, xp, wp, yp));
        if (p->naive)
            return vt__conv_fwd_ref(cu, x, w, b, y, relu);
    }
    VT__TRY(vt__ws_reserve(cu, p->ws));
    if (relu && p->fused != 0) {
        int done = vt__conv_fused(cu, p, xp, wp, b, yp);
        if (done < 0)
            return done;
        if (done)
            return vt__act_out_done(cu, y, cd, yp);
    }
    st = cudnnConvolutionForward(cu->dnn, &vt__one, p->xd, xp, p->wd, wp, p->cd,
                                 (cudnnConvolutionFwdAlgo_t)p->algo, cu->ws, cu->ws_size, &vt__zero,
                                 p->yd, yp);
    if (st != CUDNN_STATUS_SUCCESS && vt__dnn_unsupported(cu, st)) {
        vt__dnn_refused(st, "conv fwd", N, H, W, cp, K, cd, "using the reference kernel");
        p->naive = 1;
        return vt__conv_fwd_ref(cu, x, w, b, y, relu);
    }
    if (st != CUDNN_STATUS_SUCCESS)
        return vt__cudnn_fail(cu, st, "cudnnConvolutionForward", __FILE__, __LINE__);
    VT_CUDA_TRY(cu, vt_cuk_bias_act(cu->stream, yp, vt__kt(cd), (const float *)b->data,
                                    (size_t)N * H * W, K, relu));
    return vt__act_out_done(cu, y, cd, yp);
}

/* The convolution by the direct kernel for few input channels. */
static int vt__conv_fwd_small(vt_cuda *cu, const vt_tensor *x, const vt_tensor *w,
                              const vt_tensor *b, vt_tensor *y, int relu)
{
    VT_CUDA_TRY(cu, vt_cuk_conv_small_fwd(cu->stream, x->data, vt__kt(x->dtype),
                                          (const float *)w->data, (const float *)b->data, y->data,
                                          x->dims[0], x->dims[1], x->dims[2], x->dims[3],
                                          w->dims[0], relu));
    return 0;
}

/* Milliseconds of the fastest of three runs of plan p's convolution, by
 * the direct kernel (small != 0) or through cuDNN, timed with events. */
static int vt__conv_fwd_time(vt_cuda *cu, vt__conv_plan *p, int small, const vt_tensor *x,
                             const vt_tensor *w, const vt_tensor *b, vt_tensor *y, int relu,
                             float *ms)
{
    cudaEvent_t ev[2] = {NULL, NULL};
    int rc = 0;
    *ms = 1e30f;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (cudaEventCreate(&ev[i]) != cudaSuccess)
            rc = vt__cuda_fail(cu, cudaGetLastError(), "cudaEventCreate", __FILE__, __LINE__);
    for (int run = 0; run < 3 && rc == 0; run++) {
        float t = 0.0f;
        cudaError_t e = cudaEventRecord(ev[0], cu->stream);
        if (e == cudaSuccess)
            rc = small ? vt__conv_fwd_small(cu, x, w, b, y, relu)
                       : vt__conv_fwd_dnn(cu, p, x, w, b, y, relu);
        if (rc == 0 && e == cudaSuccess && (e = cudaEventRecord(ev[1], cu->stream)) == cudaSuccess &&
            (e = cudaEventSynchronize(ev[1])) == cudaSuccess &&
            (e = cudaEventElapsedTime(&t, ev[0], ev[1])) == cudaSuccess && t < *ms)
            *ms = t;
        if (rc == 0 && e != cudaSuccess)
            rc = vt__cuda_fail(cu, e, "timing a convolution", __FILE__, __LINE__);
    }
    for (int i = 0; i < 2; i++)
        if (ev[i] && cudaEventDestroy(ev[i]) != cudaSuccess)
            (void)cudaGetLastError();
    return rc;
}

/* Decides once per plan whether the direct kernel for few input channels
 * (VGG's first layer) runs instead of cuDNN: never where it does not apply
 * (C > 4, K not a multiple of 64, input and output of different dtypes) or
 * VT_CUDA_SMALL_CONV=cudnn; always with =own, and where nothing may be
 * timed (VT_CUDA_CONV_SEARCH=heuristic, VT_CUDA_DETERMINISTIC=1: the same
 * choice every run); else whichever of the two ran faster here, cuDNN's
 * time including its channel padding. */
static int vt__conv_small_choose(vt_cuda *cu, vt__conv_plan *p, const vt_tensor *x,
                                 const vt_tensor *w, const vt_tensor *b, vt_tensor *y, int relu)
{
    float own = 0.0f, dnn = 0.0f;
    if (x->dims[3] > 4 || w->dims[0] % 64 || x->dtype != y->dtype ||
        cu->small == VT__SMALL_CUDNN) {
        p->own = 0;
        return 0;
    }
    if (cu->small == VT__SMALL_OWN || !cu->find || cu->deterministic) {
        p->own = 1;
        return 0;
    }
    VT__TRY(vt__no_capture(cu, "timing the first layer"));
    /* cuDNN's search runs outside the clock; where its path fails (out of
     * memory for its padded input, say) the direct kernel is the choice */
    int rc = vt__conv_fwd_dnn(cu, p, x, w, b, y, relu);
    if (rc == 0)
        rc = vt__conv_fwd_time(cu, p, 0, x, w, b, y, relu, &dnn);
    if (rc < 0) {
        if (cu->sticky)
            return rc;
        vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
               "cuda: conv fwd n%d %dx%d c%d k%d: cuDNN failed (%s); using the direct kernel",
               x->dims[0], x->dims[1], x->dims[2], x->dims[3], w->dims[0], vt_error_msg());
        p->own = 1;
        return 0;
    }
    VT__TRY(vt__conv_fwd_time(cu, p, 1, x, w, b, y, relu, &own));
    p->own = own < dnn;
    if (p->own) /* cuDNN's padded input, as large as this layer's input: made
                   again if another operation needs the slot */
        vt__tmp_release(cu, VT__T_IN);
    vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
           "cuda: conv fwd n%d %dx%d c%d k%d %s: direct kernel %.3f ms, cuDNN %.3f ms: %s",
           x->dims[0], x->dims[1], x->dims[2], x->dims[3], w->dims[0], vt__dt_name(x->dtype), own,
           dnn, p->own ? "direct" : "cuDNN");
    return 0;
}

static int vt__cuda_conv_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                             const vt_tensor *b, vt_tensor *y, int relu)
{
    vt_cuda *cu = vt__cu(be);
    int N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], K = w->dims[0];
    vt_dtype cd = x->dtype;
    int cp = cd == VT_BF16 && cu->pad && C % 8 ? (C + 7) / 8 * 8 : C;
    vt__conv_plan *p;

    VT__OP(cu);
    VT__TRY(vt__need_f32(w, "conv_fwd", "w"));
    VT__TRY(vt__need_f32(b, "conv_fwd", "b"));
    VT__TRY(vt__conv_plan_get(cu, VT__FWD, N, H, W, cp, K, cd, &p));
    if (p->own < 0)
        VT__TRY(vt__conv_small_choose(cu, p, x, w, b, y, relu));
    /* (a plan is keyed by the padded C: one for C <= 4 may serve C = 5..8) */
    if (p->own && C <= 4 && K % 64 == 0 && x->dtype == y->dtype)
        return vt__conv_fwd_small(cu, x, w, b, y, relu);
    return vt__conv_fwd_dnn(cu, p, x, w, b, y, relu);
}

static int vt__cuda_conv_bwd_data(vt_backend *be, const vt_tensor *dy, const vt_tensor *w,
                                  vt_tensor *dx)
{
    vt_cuda *cu = vt__cu(be);
    int N = dy->dims[0], H = dy->dims[1], W = dy->dims[2], K = dy->dims[3], C = w->dims[3];
    vt_dtype cd = dy->dtype;
    const void *wp = w->data;
    void *dxp;
    vt__conv_plan *p;
    cudnnStatus_t st;

    VT__OP(cu);
    VT__TRY(vt__need_f32(w, "conv_bwd_data", "w"));
    VT__TRY(vt__conv_plan_get(cu, VT__BWD_DATA, N, H, W, C, K, cd, &p));
    if (!p->naive) {
        if (cd == VT_BF16)
            VT__TRY(vt__bf16_copy(cu, w, 0, &wp));
        VT__TRY(vt__act_out(cu, dx, cd, &dxp));
        if (!p->searched)
            VT__TRY(vt__conv_search(cu, p, dy->data, wp, dxp));
    }
    if (!p->naive) {
        VT__TRY(vt__ws_reserve(cu, p->ws));
        st = cudnnConvolutionBackwardData(cu->dnn, &vt__one, p->wd, wp, p->yd, dy->data, p->cd,
                                          (cudnnConvolutionBwdDataAlgo_t)p->algo, cu->ws,
                                          cu->ws_size, &vt__zero, p->xd, dxp);
        if (st == CUDNN_STATUS_SUCCESS)
            return vt__act_out_done(cu, dx, cd, dxp);
        if (!vt__dnn_unsupported(cu, st))
            return vt__cudnn_fail(cu, st, "cudnnConvolutionBackwardData", __FILE__, __LINE__);
        vt__dnn_refused(st, "conv bwd_data", N, H, W, C, K, cd, "using the reference kernel");
        p->naive = 1;
    }
    VT_CUDA_TRY(cu, vt_cuk_conv_bwd_data_ref(cu->stream, dy->data, vt__kt(dy->dtype),
                                             (const float *)w->data, dx->data, vt__kt(dx->dtype), N,
                                             H, W, C, K));
    return 0;
}

static int vt__cuda_conv_bwd_filter(vt_backend *be, const vt_tensor *x, const vt_tensor *dy,
                                    vt_tensor *dw, vt_tensor *db)
{
    vt_cuda *cu = vt__cu(be);
    int N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], K = dy->dims[3];
    vt_dtype cd = x->dtype;
    /* bf16 C = 3 (the first layer, trained from scratch): pad to 8 channels as
     * in the forward pass, compute (K,3,3,8) and keep the first C channels */
    int cp = cd == VT_BF16 && cu->pad && C % 8 ? (C + 7) / 8 * 8 : C;
    const void *xp = x->data, *dyp = dy->data;
    void *dwp = dw->data;
    vt__conv_plan *p;
    cudnnStatus_t st;

    VT__OP(cu);
    VT__TRY(vt__need_f32(dw, "conv_bwd_filter", "dw"));
    VT__TRY(vt__need_f32(db, "conv_bwd_filter", "db"));
    VT__TRY(vt__conv_plan_get(cu, VT__BWD_FILTER, N, H, W, cp, K, cd, &p));
    if (!p->naive) {
        if (cp != C) {
            void *pad;
            VT__TRY(vt__tmp(cu, VT__T_IN, (size_t)N * H * W * cp * 2, &pad));
            VT_CUDA_TRY(cu, vt_cuk_pad_channels(cu->stream, x->data, VT_CUK_BF16,
                                                (size_t)N * H * W, C, cp, pad, VT_CUK_BF16));
            xp = pad;
        }
        VT__TRY(vt__act_in(cu, dy, cd, VT__T_IN2, &dyp));
        if (cd == VT_BF16)
            VT__TRY(vt__tmp(cu, VT__T_DW, (size_t)K * 9 * cp * 2, &dwp));
        if (!p->searched)
            VT__TRY(vt__conv_search(cu, p, xp, dyp, dwp));
    }
    if (!p->naive) {
        VT__TRY(vt__ws_reserve(cu, p->ws));
        st = cudnnConvolutionBackwardFilter(cu->dnn, &vt__one, p->xd, xp, p->yd, dyp, p->cd,
                                            (cudnnConvolutionBwdFilterAlgo_t)p->algo, cu->ws,
                                            cu->ws_size, &vt__zero, p->wd, dwp);
        if (st == CUDNN_STATUS_SUCCESS) {
            /* bf16 (K,3,3,cp) -> f32 (K,3,3,C): the channel copy drops the padding */
            if (dwp != dw->data)
                VT_CUDA_TRY(cu, vt_cuk_pad_channels(cu->stream, dwp, VT_CUK_BF16, (size_t)K * 9,
                                                    cp, C, dw->data, VT_CUK_F32));
            return vt__colsum(cu, dy, (size_t)N * H * W, K, (float *)db->data);
        }
        if (!vt__dnn_unsupported(cu, st))
            return vt__cudnn_fail(cu, st, "cudnnConvolutionBackwardFilter", __FILE__, __LINE__);
        vt__dnn_refused(st, "conv bwd_filter", N, H, W, cp, K, cd, "using the reference kernel");
        p->naive = 1;
    }
    VT_CUDA_TRY(cu, vt_cuk_conv_bwd_filter_ref(cu->stream, x->data, vt__kt(x->dtype), dy->data,
                                               vt__kt(dy->dtype), (float *)dw->data, N, H, W, C,
                                               K));
    return vt__colsum(cu, dy, (size_t)N * H * W, K, (float *)db->data);
}

/* ---- matrix products ---------------------------------------------------------- */

static void vt__gemm_plan_free(vt__gemm_plan *g)
{
    if (!g)
        return;
    if (g->la)
        cublasLtMatrixLayoutDestroy(g->la);
    if (g->lb)
        cublasLtMatrixLayoutDestroy(g->lb);
    if (g->ld)
        cublasLtMatrixLayoutDestroy(g->ld);
    if (g->desc)
        cublasLtMatmulDescDestroy(g->desc);
    free(g);
}

/* Descriptors and the heuristic's algorithm; g->ok = 0 when cuBLASLt has
 * none for this configuration. */
static int vt__gemm_plan_init(vt_cuda *cu, vt__gemm_plan *g, const void *bias)
{
    cublasOperation_t ta = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = g->epi == VT__EPI_RELU_BIAS ? CUBLASLT_EPILOGUE_RELU_BIAS
                             : g->epi == VT__EPI_BIAS    ? CUBLASLT_EPILOGUE_BIAS
                                                         : CUBLASLT_EPILOGUE_DEFAULT;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    uint64_t wsz = cu->lt_ws_size;
    int got = 0;
    cublasStatus_t st;

    VT_CUBLAS_TRY(cu, cublasLtMatmulDescCreate(&g->desc, g->ct, CUDA_R_32F));
    VT_CUBLAS_TRY(cu, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                     sizeof ta));
    VT_CUBLAS_TRY(cu, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                     sizeof tb));
    VT_CUBLAS_TRY(cu, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                     sizeof epi));
    if (g->epi != VT__EPI_NONE)
        VT_CUBLAS_TRY(cu, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &bias, sizeof bias));
    VT_CUBLAS_TRY(cu, cublasLtMatrixLayoutCreate(&g->la, g->at, g->ta ? g->k : g->m,
                                                 g->ta ? g->m : g->k, g->lda));
    VT_CUBLAS_TRY(cu, cublasLtMatrixLayoutCreate(&g->lb, g->bt, g->tb ? g->n : g->k,
                                                 g->tb ? g->k : g->n, g->ldb));
    VT_CUBLAS_TRY(cu, cublasLtMatrixLayoutCreate(&g->ld, g->dt, g->m, g->n, g->ldd));
    VT_CUBLAS_TRY(cu, cublasLtMatmulPreferenceCreate(&pref));
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz,
                                              sizeof wsz);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(cu->lt, g->desc, g->la, g->lb, g->ld, g->ld, pref, 1,
                                            &res, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    g->ok = st == CUBLAS_STATUS_SUCCESS && got > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (g->ok)
        g->algo = res.algo;
    else
        (void)cudaGetLastError();
    vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
           "cuda: gemm m%d n%d k%d %c%c types %d,%d->%d epilogue %d: %s", g->m, g->n, g->k,
           g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', (int)g->at, (int)g->bt, (int)g->dt, g->epi,
           g->ok ? "cuBLASLt" : "cublasGemmEx fallback");
    return 0;
}

/* D (m x n, column-major, ldd) = op(A) op(B) [+ bias, ReLU]: cuBLASLt with
 * the epilogue where it has an algorithm, else cublasGemmEx followed by the
 * bias kernel (bias_f32).  bias_lt is the bias in D's dtype for cuBLASLt. */
static int vt__gemm(vt_cuda *cu, int ta, int tb, int m, int n, int k, const void *A,
                    cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, void *D,
                    cudaDataType dt, int ldd, int epi, const void *bias_lt, const float *bias_f32)
{
    cublasComputeType_t ct = at == CUDA_R_32F && bt == CUDA_R_32F && cu->tf32
                                 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                 : CUBLAS_COMPUTE_32F;
    vt__gemm_plan *g = NULL;
    int rc;

    for (int i = 0; i < cu->ngplans; i++) {
        vt__gemm_plan *q = cu->gplans[i];
        if (q->m == m && q->n == n && q->k == k && q->ta == ta && q->tb == tb && q->lda == lda &&
            q->ldb == ldb && q->ldd == ldd && q->epi == epi && q->at == at && q->bt == bt &&
            q->dt == dt && q->ct == ct) {
            g = q;
            break;
        }
    }
    if (!g) {
        VT__TRY(vt__room(&cu->gplans, &cu->cap_gplans, cu->ngplans));
        if (!(g = (vt__gemm_plan *)calloc(1, sizeof *g)))
            return vt_error_set(VT_ENOMEM, "out of host memory");
        g->m = m, g->n = n, g->k = k, g->ta = ta, g->tb = tb;
        g->lda = lda, g->ldb = ldb, g->ldd = ldd, g->epi = epi;
        g->at = at, g->bt = bt, g->dt = dt, g->ct = ct;
        if ((rc = vt__gemm_plan_init(cu, g, bias_lt)) < 0) {
            vt__gemm_plan_free(g);
            return vt_error_wrap(rc, "cuBLASLt descriptors");
        }
        cu->gplans[cu->ngplans++] = g;
    }
    if (g->ok) {
        cublasStatus_t st;
        if (epi != VT__EPI_NONE)
            VT_CUBLAS_TRY(cu, cublasLtMatmulDescSetAttribute(
                                  g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_lt,
                                  sizeof bias_lt));
        st = cublasLtMatmul(cu->lt, g->desc, &vt__one, A, g->la, B, g->lb, &vt__zero, D, g->ld, D,
                            g->ld, &g->algo, cu->lt_ws, cu->lt_ws_size, cu->stream);
        if (st == CUBLAS_STATUS_SUCCESS) {
            g->used = 1;
            return 0;
        }
        if (g->used || (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE))
            return vt__cublas_fail(cu, st, "cublasLtMatmul", __FILE__, __LINE__);
        (void)cudaGetLastError();
        vt_log_warn("cuda: cuBLASLt refused gemm m%d n%d k%d (%s); using cublasGemmEx", m, n, k,
                    cublasGetStatusString(st));
        g->ok = 0;
    }
    VT_CUBLAS_TRY(cu, cublasGemmEx(cu->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &vt__one, A, at, lda, B,
                                   bt, ldb, &vt__zero, D, dt, ldd, ct, CUBLAS_GEMM_DEFAULT));
    if (epi != VT__EPI_NONE)
        VT_CUDA_TRY(cu, vt_cuk_bias_act(cu->stream, D, dt == CUDA_R_16BF ? VT_CUK_BF16 : VT_CUK_F32,
                                        bias_f32, (size_t)n, m, epi == VT__EPI_RELU_BIAS));
    return 0;
}

/* Row-major y (N, OUT) = x (N, IN) w^T + b is, column-major, y^T (OUT, N) =
 * op_T(w as IN x OUT) * (x as IN x N): m = OUT, n = N, k = IN. */
static int vt__cuda_dense_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                              const vt_tensor *b, vt_tensor *y, int relu)
{
    vt_cuda *cu = vt__cu(be);
    int N = x->dims[0], IN = (int)(x->numel / (size_t)N), OUT = w->dims[0];
    vt_dtype cd = x->dtype;
    const void *wp = w->data, *bias = b->data;
    void *yp;

    VT__OP(cu);
    VT__TRY(vt__need_f32(w, "dense_fwd", "w"));
    VT__TRY(vt__need_f32(b, "dense_fwd", "b"));
    if (cd == VT_BF16) {
        VT__TRY(vt__bf16_copy(cu, w, 0, &wp));
        VT__TRY(vt__bf16_copy(cu, b, 0, &bias));
    }
    VT__TRY(vt__act_out(cu, y, cd, &yp));
    VT__TRY(vt__gemm(cu, 1, 0, OUT, N, IN, wp, vt__blas_type(cd), IN, x->data, vt__blas_type(cd),
                     IN, yp, vt__blas_type(cd), OUT, relu ? VT__EPI_RELU_BIAS : VT__EPI_BIAS, bias,
                     (const float *)b->data));
    return vt__act_out_done(cu, y, cd, yp);
}

/* dw (OUT, IN) row-major = dy^T x: column-major dw^T (IN, OUT) = (x as IN x
 * N) op_T(dy as OUT x N).  dx (N, IN) = dy w: column-major dx^T (IN, N) =
 * (w as IN x OUT)(dy as OUT x N).  db = column sums of dy. */
static int vt__cuda_dense_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                              const vt_tensor *dy, vt_tensor *dx, vt_tensor *dw, vt_tensor *db)
{
    vt_cuda *cu = vt__cu(be);
    int N = x->dims[0], IN = (int)(x->numel / (size_t)N), OUT = w->dims[0];
    vt_dtype cd = x->dtype;
    cudaDataType t = vt__blas_type(cd);
    const void *dyp;

    VT__OP(cu);
    VT__TRY(vt__need_f32(w, "dense_bwd", "w"));
    VT__TRY(vt__need_f32(dw, "dense_bwd", "dw"));
    VT__TRY(vt__need_f32(db, "dense_bwd", "db"));
    VT__TRY(vt__act_in(cu, dy, cd, VT__T_IN2, &dyp));
    VT__TRY(vt__gemm(cu, 0, 1, IN, OUT, N, x->data, t, IN, dyp, t, OUT, dw->data, CUDA_R_32F, IN,
                     VT__EPI_NONE, NULL, NULL));
    VT__TRY(vt__colsum(cu, dy, (size_t)N, OUT, (float *)db->data));
    if (dx) {
        const void *wp = w->data;
        void *dxp;
        if (cd == VT_BF16)
            VT__TRY(vt__bf16_copy(cu, w, 0, &wp));
        VT__TRY(vt__act_out(cu, dx, cd, &dxp));
        VT__TRY(vt__gemm(cu, 0, 0, IN, N, OUT, wp, t, IN, dyp, t, OUT, dxp, t, IN, VT__EPI_NONE,
                         NULL, NULL));
        VT__TRY(vt__act_out_done(cu, dx, cd, dxp));
    }
    return 0;
}

/* ---- elementwise operations ------------------------------------------------ */

static int vt__cuda_images_to_input(vt_backend *be, const uint8_t *images, int n, int h, int w,
                                    vt_preprocess prep, vt_tensor *x)
{
    vt_cuda *cu = vt__cu(be);
    size_t pixels = (size_t)n * h * w;
    void *stage = NULL;
    VT__HOST_OP(cu, "images");
    VT__TRY(vt__tmp(cu, VT__T_STAGE, pixels * 3, &stage));
    VT__TRY(vt__h2d_images(cu, stage, images, pixels * 3));
    VT_CUDA_TRY(cu, vt_cuk_images(cu->stream, (const uint8_t *)stage, pixels,
                                  prep == VT_PREP_CAFFE, x->data, vt__kt(x->dtype)));
    return 0;
}

static int vt__cuda_images_resize(vt_backend *be, const uint8_t *images, size_t bytes,
                                  const vt_image_box *boxes, int n, vt_preprocess prep,
                                  vt_tensor *x)
{
    vt_cuda *cu = vt__cu(be);
    void *stage = NULL, *dboxes = NULL;
    VT__HOST_OP(cu, "images");
    VT__TRY(vt__tmp(cu, VT__T_STAGE, bytes, &stage));
    VT__TRY(vt__tmp(cu, VT__T_BOXES, sizeof *boxes * (size_t)n, &dboxes));
    VT__TRY(vt__h2d_images(cu, stage, images, bytes));
    VT__TRY(vt__h2d(cu, dboxes, boxes, sizeof *boxes * (size_t)n));
    VT_CUDA_TRY(cu, vt_cuk_images_resize(cu->stream, (const uint8_t *)stage,
                                         (const vt_image_box *)dboxes, n, x->dims[1],
                                         prep == VT_PREP_CAFFE, x->data, vt__kt(x->dtype)));
    return 0;
}

static int vt__cuda_relu_bwd(vt_backend *be, const vt_tensor *y, vt_tensor *dy)
{
    vt_cuda *cu = vt__cu(be);
    VT__OP(cu);
    VT_CUDA_TRY(cu, vt_cuk_relu_bwd(cu->stream, y->data, vt__kt(y->dtype), dy->data,
                                    vt__kt(dy->dtype), dy->numel));
    return 0;
}

static int vt__cuda_maxpool_fwd(vt_backend *be, const vt_tensor *x, vt_tensor *y)
{
    vt_cuda *cu = vt__cu(be);
    const void *xp;
    VT__OP(cu);
    /* x and y share one dtype in the kernel */
    VT__TRY(vt__act_in(cu, x, y->dtype, VT__T_IN, &xp));
    VT_CUDA_TRY(cu, vt_cuk_maxpool_fwd(cu->stream, xp, y->data, vt__kt(y->dtype), x->dims[0],
                                       x->dims[1], x->dims[2], x->dims[3]));
    return 0;
}

static int vt__cuda_maxpool_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *y,
                                const vt_tensor *dy, vt_tensor *dx)
{
    vt_cuda *cu = vt__cu(be);
    const void *xp, *gp;
    VT__OP(cu);
    VT__TRY(vt__act_in(cu, x, y->dtype, VT__T_IN, &xp));
    VT__TRY(vt__act_in(cu, dy, dx->dtype, VT__T_IN2, &gp));
    VT_CUDA_TRY(cu, vt_cuk_maxpool_bwd(cu->stream, xp, y->data, vt__kt(y->dtype), gp, dx->data,
                                       vt__kt(dx->dtype), x->dims[0], x->dims[1], x->dims[2],
                                       x->dims[3]));
    return 0;
}

static int vt__cuda_dropout_fwd(vt_backend *be, vt_tensor *x, vt_tensor *mask, float rate,
                                uint64_t seed, uint64_t stream)
{
    vt_cuda *cu = vt__cu(be);
    float keep = 1.0f / (1.0f - rate);
    uint64_t base = vt_rng_mix(seed ^ vt_rng_mix(stream));
    vt__patch want = {NULL, VT__P_DROPOUT, rate, keep, 0.0f, 0, base, NULL};
    VT__ENTER(cu);
    if (cu->rec_mode == VT__REC_REPLAY)
        return vt__replay_patch(cu, &want);
    VT_CUDA_TRY(cu, vt_cuk_dropout_fwd(cu->stream, x->data, vt__kt(x->dtype), (float *)mask->data,
                                       x->numel, rate, keep, base));
    return vt__capture_patch(cu, &want);
}

static int vt__cuda_dropout_bwd(vt_backend *be, const vt_tensor *mask, vt_tensor *dy)
{
    vt_cuda *cu = vt__cu(be);
    VT__OP(cu);
    VT_CUDA_TRY(cu, vt_cuk_dropout_bwd(cu->stream, (const float *)mask->data, dy->data,
                                       vt__kt(dy->dtype), dy->numel));
    return 0;
}

static int vt__cuda_sync(vt_backend *be);

static int vt__cuda_softmax_xent(vt_backend *be, const vt_tensor *logits, const vt_tensor *labels,
                                 vt_tensor *dlogits, float grad_scale, vt_tensor *probs,
                                 vt_xent_sums *sums)
{
    vt_cuda *cu = vt__cu(be);
    int N = logits->dims[0], C = logits->dims[1], k;
    VT__ENTER(cu);
    if (cu->rec_mode != VT__REC_NONE)
        return vt__rec_softmax_xent(cu, logits, labels, dlogits, grad_scale, probs, sums);
    if (cu->nxent == VT__XENT_SLOTS) /* a long run without a sync: deliver */
        VT__TRY(vt__cuda_sync(be));
    k = cu->nxent;
    VT_CUDA_TRY(cu, vt_cuk_softmax_xent(cu->stream, logits->data, vt__kt(logits->dtype),
                                        (const int32_t *)labels->data, N, C,
                                        dlogits ? dlogits->data : NULL,
                                        dlogits ? vt__kt(dlogits->dtype) : VT_CUK_F32, grad_scale,
                                        probs ? probs->data : NULL,
                                        probs ? vt__kt(probs->dtype) : VT_CUK_F32, cu->dres + k));
    VT_CUDA_TRY(cu, cudaMemcpyAsync(cu->hres + k, cu->dres + k, sizeof *cu->hres,
                                    cudaMemcpyDeviceToHost, cu->stream));
    cu->xent_to[k] = sums;
    cu->xent_c[k] = C;
    cu->nxent = k + 1;
    return 0;
}

static int vt__cuda_sgd_update(vt_backend *be, vt_tensor *w, const vt_tensor *g, vt_tensor *v,
                               const vt_sgd_args *a)
{
    vt_cuda *cu = vt__cu(be);
    vt__shadow *s = (vt__shadow *)w->shadow;
    void *sh = NULL;
    vt__patch want = {NULL, VT__P_SGD, a->lr, a->momentum, a->weight_decay, a->nesterov, 0, NULL};
    VT__ENTER(cu);
    /* A plain bf16 copy of w is rewritten in the same pass (see the top);
     * in a replay the graph's copy of this launch rewrites it, provided it
     * is the copy the launch was captured with. */
    if (s && s->ptr && s->cpad == 0 && s->elems == w->numel)
        sh = s->ptr;
    want.shadow = sh;
    if (cu->rec_mode == VT__REC_REPLAY) {
        VT__TRY(vt__replay_patch(cu, &want));
    } else {
        VT_CUDA_TRY(cu, vt_cuk_sgd(cu->stream, (float *)w->data, (const float *)g->data,
                                   (float *)v->data, w->numel, a->lr, a->momentum,
                                   a->weight_decay, a->nesterov, sh));
        VT__TRY(vt__capture_patch(cu, &want));
    }
    if (sh) {
        if (cu->rec_mode == VT__REC_CAPTURE)
            VT__TRY(vt__touch(cu, s));
        s->version = w->version;
        s->valid = 1;
    }
    return 0;
}

/* ---- recorded sequences (CUDA graphs) ------------------------------------
 *
 * vt_record_begin with no recording starts capturing the stream
 * (cudaStreamBeginCapture, thread-local mode): the operations that follow
 * are recorded into a graph, not run.  Their per-run arguments (the SGD
 * arguments, the dropout rate and seed) are noted with the kernel node each
 * launch became; the softmax writes its sums into the recording's own
 * device slot and a one-thread kernel adds them to a second slot, which
 * vt__cuda_sync reads back.  vt_record_end instantiates the graph and
 * launches it.  A replay makes the same calls: each only counts (VT__OP),
 * the patchable ones compare their arguments with the graph's and update
 * the nodes that differ (cudaGraphExecKernelNodeSetParams), and
 * vt_record_end launches the graph.
 *
 * A graph holds the device pointers it was captured with: the tensors' (the
 * caller keeps them, see backend.h) and the backend's own (workspace,
 * scratch, bf16 copies).  Whenever one of the latter moves, or a weight is
 * written from the host (its bf16 copy would be stale in the graph), cu->gen
 * moves and recordings of an older generation are declined. */

static int vt__replay_skip(vt_cuda *cu)
{
    cu->rec->opcount++;
    return 0;
}

static int vt__rec_refuse(vt_cuda *cu, const char *what)
{
    if (cu->rec)
        cu->rec->bad = 1;
    return vt_error_set(VT_EINVAL, "%s inside a recorded sequence", what);
}

/* Capture: notes the kernel node the launch just made (the capture's only
 * dependency now) with its patchable arguments. */
static int vt__capture_patch(vt_cuda *cu, const vt__patch *want)
{
    vt_recording *r = cu->rec;
    cudaStreamCaptureStatus st;
    const cudaGraphNode_t *deps = NULL;
    size_t ndeps = 0;
    if (cu->rec_mode != VT__REC_CAPTURE)
        return 0;
    r->nops++;
#if CUDART_VERSION >= 13000
    VT_CUDA_TRY(cu, cudaStreamGetCaptureInfo(cu->stream, &st, NULL, NULL, &deps, NULL, &ndeps));
#else /* CUDA 12: the same query without edge data */
    VT_CUDA_TRY(cu, cudaStreamGetCaptureInfo_v2(cu->stream, &st, NULL, NULL, &deps, &ndeps));
#endif
    if (st != cudaStreamCaptureStatusActive || ndeps != 1)
        return vt_error_set(VT_EINVAL, "capture: a launch did not end the sequence (%zu nodes)",
                            ndeps);
    VT__TRY(vt__room(&r->patch, &r->cap_patch, r->npatch));
    r->patch[r->npatch] = *want;
    r->patch[r->npatch].node = deps[0];
    r->npatch++;
    return 0;
}

/* Replay: the next patchable launch of the sequence, with these arguments. */
static int vt__replay_patch(vt_cuda *cu, const vt__patch *want)
{
    vt_recording *r = cu->rec;
    vt__patch *p;
    cudaError_t e = cudaSuccess;
    r->opcount++;
    if (r->cursor >= r->npatch || r->patch[r->cursor].kind != want->kind) {
        r->bad = 1;
        return 0;
    }
    p = &r->patch[r->cursor++];
    if (p->shadow != want->shadow) { /* the graph would write another bf16 copy */
        r->bad = 1;
        return 0;
    }
    if (p->kind == VT__P_SGD) {
        if (p->a != want->a || p->b != want->b || p->c != want->c || p->nesterov != want->nesterov)
            e = vt_cuk_sgd_set(r->exec, p->node, want->a, want->b, want->c, want->nesterov);
    } else if (p->a != want->a || p->b != want->b || p->base != want->base) {
        e = vt_cuk_dropout_set(r->exec, p->node, want->a, want->b, want->base);
    }
    if (e != cudaSuccess) {
        r->bad = 1; /* the sequence runs unrecorded instead */
        (void)cudaGetLastError();
        return 0;
    }
    {
        cudaGraphNode_t node = p->node;
        *p = *want;
        p->node = node;
    }
    return 0;
}

/* Softmax cross-entropy inside a sequence: captured into the recording's
 * slot and summed on the device; in a replay only checked. */
static int vt__rec_softmax_xent(vt_cuda *cu, const vt_tensor *logits, const vt_tensor *labels,
                                vt_tensor *dlogits, float grad_scale, vt_tensor *probs,
                                vt_xent_sums *sums)
{
    vt_recording *r = cu->rec;
    if (cu->rec_mode == VT__REC_REPLAY) {
        r->opcount++;
        if (sums != r->sums || !r->xent_c)
            r->bad = 1;
        return 0;
    }
    r->nops++;
    if (r->xent_c) /* one per sequence */
        return vt_error_set(VT_EINVAL, "capture: a second softmax in one sequence");
    VT_CUDA_TRY(cu, vt_cuk_softmax_xent(cu->stream, logits->data, vt__kt(logits->dtype),
                                        (const int32_t *)labels->data, logits->dims[0],
                                        logits->dims[1], dlogits ? dlogits->data : NULL,
                                        dlogits ? vt__kt(dlogits->dtype) : VT_CUK_F32, grad_scale,
                                        probs ? probs->data : NULL,
                                        probs ? vt__kt(probs->dtype) : VT_CUK_F32, r->dres));
    VT_CUDA_TRY(cu, vt_cuk_xent_add(cu->stream, r->dres, r->dres + 1));
    r->sums = sums;
    r->xent_c = logits->dims[1];
    return 0;
}

/* Marks r's device sums as awaiting vt__cuda_sync. */
static int vt__rec_pending(vt_cuda *cu, vt_recording *r)
{
    if (!r->xent_c || r->pending)
        return 0;
    VT__TRY(vt__room(&cu->pending, &cu->cap_pending, cu->npending));
    cu->pending[cu->npending++] = r;
    r->pending = 1;
    return 0;
}

/* Queues the read-back of every pending recording's sums (before the
 * stream is synchronised). */
static int vt__rec_collect(vt_cuda *cu)
{
    for (int i = 0; i < cu->npending; i++) {
        vt_recording *r = cu->pending[i];
        VT_CUDA_TRY(cu, cudaMemcpyAsync(r->hacc, r->dres + 1, sizeof *r->hacc,
                                        cudaMemcpyDeviceToHost, cu->stream));
        VT_CUDA_TRY(cu, cudaMemsetAsync(r->dres + 1, 0, sizeof *r->dres, cu->stream));
    }
    return 0;
}

/* Hands r's collected sums (r->hacc, read back) over; a bad label is kept
 * in cu->late_* for the caller to report. */
static void vt__rec_hand_over(vt_cuda *cu, vt_recording *r)
{
    if (r->hacc->bad && !cu->late_bad) {
        cu->late_bad = 1;
        cu->late_label = r->hacc->bad_label;
        cu->late_c = r->xent_c;
    }
    if (r->sums) {
        r->sums->loss += r->hacc->loss;
        r->sums->correct += r->hacc->correct;
    }
    r->pending = 0;
}

/* After the stream is synchronised: hands every pending recording's sums
 * over, and reports the first bad label (a late one first). */
static int vt__rec_deliver(vt_cuda *cu)
{
    for (int i = 0; i < cu->npending; i++)
        vt__rec_hand_over(cu, cu->pending[i]);
    cu->npending = 0;
    if (!cu->late_bad)
        return 0;
    cu->late_bad = 0;
    return vt_error_set(VT_EINVAL, "label %d outside 0..%d", cu->late_label, cu->late_c - 1);
}

static void vt__recording_destroy(vt_recording *r)
{
    if (!r)
        return;
    if (r->exec)
        cudaGraphExecDestroy(r->exec);
    if (r->graph)
        cudaGraphDestroy(r->graph);
    if (r->dres)
        cudaFree(r->dres);
    if (r->hacc)
        cudaFreeHost(r->hacc);
    (void)cudaGetLastError();
    free(r->patch);
    free(r);
}

/* Frees r after handing over the sums of its runs (only its own: other
 * pending results wait for the next sync, which also reports a bad label
 * found here). */
static void vt__cuda_recording_free(vt_backend *be, vt_recording *r)
{
    vt_cuda *cu = vt__cu(be);
    for (int i = 0; i < cu->npending; i++)
        if (cu->pending[i] == r)
            cu->pending[i] = cu->pending[--cu->npending];
    int collect = r->pending && !cu->sticky &&
                  cudaMemcpyAsync(r->hacc, r->dres + 1, sizeof *r->hacc,
                                  cudaMemcpyDeviceToHost, cu->stream) == cudaSuccess;
    if (cudaStreamSynchronize(cu->stream) != cudaSuccess) { /* also before the frees */
        (void)cudaGetLastError();
        collect = 0;
    }
    if (collect)
        vt__rec_hand_over(cu, r);
    vt__recording_destroy(r);
}

static int vt__cuda_record_begin(vt_backend *be, vt_recording **rec)
{
    vt_cuda *cu = vt__cu(be);
    vt_recording *r = *rec;
    VT__ENTER(cu);
    if (!cu->graphs)
        return vt_error_set(VT_EUNSUPPORTED, "CUDA graphs are off (VT_CUDA_GRAPHS=1 turns them on)");
    if (cu->rec_mode != VT__REC_NONE)
        return vt_error_set(VT_EINVAL, "a recorded sequence is already open");
    if (r && r->gen != cu->gen) { /* its buffers moved: one plain run, then record again */
        vt__cuda_recording_free(be, r);
        *rec = NULL;
        return 0;
    }
    if (r) {
        r->cursor = r->opcount = r->bad = 0;
        cu->rec = r;
        cu->rec_mode = VT__REC_REPLAY;
        return 1;
    }
    if (!(r = (vt_recording *)calloc(1, sizeof *r)))
        return vt_error_set(VT_ENOMEM, "out of host memory");
    if (vt__dmalloc(cu, (void **)&r->dres, 2 * sizeof *r->dres, "softmax results") < 0 ||
        cudaMallocHost((void **)&r->hacc, sizeof *r->hacc) != cudaSuccess ||
        cudaMemsetAsync(r->dres, 0, 2 * sizeof *r->dres, cu->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        vt__recording_destroy(r);
        return vt_error_set(VT_EDEVOOM, "no memory for a recorded sequence");
    }
    cudaError_t e = cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        vt__recording_destroy(r);
        return vt__cuda_fail(cu, e, "cudaStreamBeginCapture", __FILE__, __LINE__);
    }
    cu->ntouched = 0;
    cu->captured_seq = cu->seq;
    cu->rec = r;
    cu->rec_mode = VT__REC_CAPTURE;
    *rec = r;
    return 1;
}

/* Ends a capture: the graph instantiated and launched (1), or, when the
 * capture failed, the shadows it marked fresh made stale again and nothing
 * run (0); VT_EDEVLOST when ending or launching it hit a sticky error. */
static int vt__capture_end(vt_cuda *cu, vt_recording *r, int ok)
{
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->stream, &g);
    if (e == cudaSuccess && ok && g) {
        r->graph = g;
        g = NULL;
        e = cudaGraphInstantiate(&r->exec, r->graph, 0);
        if (e == cudaSuccess)
            e = cudaGraphLaunch(r->exec, cu->stream);
    }
    if (g)
        cudaGraphDestroy(g);
    if (e == cudaSuccess && ok) {
        r->gen = cu->gen;
        return 1;
    }
    if (e != cudaSuccess && vt__is_sticky(e))
        return vt__cuda_fail(cu, e, "ending a captured sequence", __FILE__, __LINE__);
    (void)cudaGetLastError();
    for (int i = 0; i < cu->ntouched; i++)
        cu->touched[i]->valid = 0;
    vt_log(cu->verbose ? VT_LOG_INFO : VT_LOG_DEBUG,
           "cuda: a sequence could not be recorded (%s); it runs unrecorded",
           e != cudaSuccess ? cudaGetErrorString(e) : "one of its operations failed");
    return 0;
}

static int vt__cuda_record_end(vt_backend *be, vt_recording **rec, int ok)
{
    vt_cuda *cu = vt__cu(be);
    vt_recording *r = cu->rec;
    int mode = cu->rec_mode, ran = 0;
    cu->rec_mode = VT__REC_NONE;
    cu->rec = NULL;
    if (!r || mode == VT__REC_NONE)
        return vt_error_set(VT_EINVAL, "no recorded sequence is open");
    if (mode == VT__REC_CAPTURE) {
        ran = vt__capture_end(cu, r, ok && !r->bad);
        cu->ntouched = 0;
    } else if (ok && !r->bad && r->opcount == r->nops && r->cursor == r->npatch) {
        cudaError_t e = cudaGraphLaunch(r->exec, cu->stream);
        if (e != cudaSuccess && vt__is_sticky(e))
            return vt__cuda_fail(cu, e, "cudaGraphLaunch", __FILE__, __LINE__);
        if (e != cudaSuccess) /* the step runs plainly instead */
            (void)cudaGetLastError();
        ran = e == cudaSuccess;
    }
    vt__late_free_drain(cu);
    if (ran < 0)
        return ran;
    if (ran == 1) {
        int rc = vt__rec_pending(cu, r);
        *rec = r;
        return rc < 0 ? rc : 1;
    }
    vt__cuda_recording_free(be, r);
    *rec = NULL;
    return 0;
}

/* ---- tensors and transfers -------------------------------------------------- */

/* ---- host tensors: pinned, mapped host memory ------------------------------
 * Kernels reach them through their device pointer (vt__hptr); the host side
 * reads and writes them only after the stream has drained. */

/* Pinned host memory the device can address; out-of-memory names the size. */
static int vt__halloc(vt_cuda *cu, vt_tensor *t, size_t bytes)
{
    cudaError_t e = cudaHostAlloc(&t->data, bytes ? bytes : 1,
                                  cudaHostAllocMapped | cudaHostAllocPortable);
    if (e == cudaSuccess) {
        memset(t->data, 0, bytes);
        return 0;
    }
    t->data = NULL;
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return vt_error_set(VT_ENOMEM, "out of pinned host memory allocating %zu bytes (%.1f MiB)",
                            bytes, bytes / VT__MIB);
    }
    return vt__cuda_fail(cu, e, "cudaHostAlloc", __FILE__, __LINE__);
}

/* The device's address of t's elements (t->data itself for device tensors). */
static int vt__hptr(vt_cuda *cu, const vt_tensor *t, void **out)
{
    *out = t->data;
    if (t->host)
        VT_CUDA_TRY(cu, cudaHostGetDevicePointer(out, t->data, 0));
    return 0;
}

/* bf16 (round to nearest even, NaN kept quiet) <-> f32 on the host, for the
 * transfers of bf16 host tensors, which convert as device ones do. */
static uint16_t vt__bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float vt__f32_of(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* upload/download of a host tensor: plain host copies once the stream has
 * finished with it. */
static int vt__host_transfer(vt_cuda *cu, vt_tensor *t, void *host, int to_tensor)
{
    VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    if (t->dtype != VT_BF16) {
        size_t bytes = t->numel * vt_dtype_size(t->dtype);
        if (to_tensor)
            memcpy(t->data, host, bytes);
        else
            memcpy(host, t->data, bytes);
        return 0;
    }
    uint16_t *h = (uint16_t *)t->data;
    float *f = (float *)host;
    for (size_t i = 0; i < t->numel; i++) {
        if (to_tensor)
            h[i] = vt__bf16_of(f[i]);
        else
            f[i] = vt__f32_of(h[i]);
    }
    return 0;
}

static int vt__cuda_alloc(vt_backend *be, vt_tensor *t)
{
    vt_cuda *cu = vt__cu(be);
    size_t bytes = t->capacity * vt_dtype_size(t->dtype);
    VT__HOST_OP(cu, "allocation");
    t->shadow = NULL;
    t->seq = ++cu->seq;
    if (t->host)
        return vt__halloc(cu, t, bytes);
    VT__TRY(vt__dmalloc(cu, &t->data, bytes, "a tensor"));
    cudaError_t e = cudaMemsetAsync(t->data, 0, bytes, cu->stream);
    if (e != cudaSuccess) { /* the caller frees t without release: free data here */
        int rc = vt__cuda_fail(cu, e, "cudaMemsetAsync", __FILE__, __LINE__);
        vt__dfree(cu, t->data);
        t->data = NULL;
        return rc;
    }
    return 0;
}

static void vt__cuda_release(vt_backend *be, vt_tensor *t)
{
    vt_cuda *cu = vt__cu(be);
    if (t->parent) { /* a view: its memory is its parent's */
        vt__shadow_free(cu, t);
        return;
    }
    if (vt__maybe_recorded(cu, t))
        cu->gen++; /* a graph may hold its memory */
    if (cu->rec)
        cu->rec->bad = 1;
    vt__shadow_free(cu, t);
    vt__free_any(cu, t->data, t->host);
    t->data = NULL;
}

/* Elements of a bf16 tensor's transfer staged in fp32 at a time (16 MiB):
 * the staging slot is kept, so a whole large tensor's would stay held. */
static const size_t VT__STAGE_PIECE = (size_t)4 << 20;

static int vt__cuda_upload(vt_backend *be, vt_tensor *t, const void *host)
{
    vt_cuda *cu = vt__cu(be);
    VT__HOST_OP(cu, "upload");
    vt__host_wrote(cu, t);
    if (t->host)
        return vt__host_transfer(cu, t, (void *)host, 1);
    if (t->dtype == VT_BF16) {
        size_t piece = t->numel < VT__STAGE_PIECE ? t->numel : VT__STAGE_PIECE;
        void *stage;
        VT__TRY(vt__tmp(cu, VT__T_STAGE, piece * 4, &stage));
        /* (one stream: a piece's copy into stage waits for the last convert) */
        for (size_t at = 0; at < t->numel; at += piece) {
            size_t n = t->numel - at < piece ? t->numel - at : piece;
            VT__TRY(vt__h2d(cu, stage, (const float *)host + at, n * 4));
            VT_CUDA_TRY(cu, vt_cuk_convert(cu->stream, (uint16_t *)t->data + at, VT_CUK_BF16,
                                           stage, VT_CUK_F32, n));
        }
        return 0;
    }
    return vt__h2d(cu, t->data, host, t->numel * vt_dtype_size(t->dtype));
}

static int vt__cuda_download(vt_backend *be, const vt_tensor *t, void *host)
{
    vt_cuda *cu = vt__cu(be);
    VT__HOST_OP(cu, "download");
    if (t->host)
        return vt__host_transfer(cu, (vt_tensor *)t, host, 0);
    if (t->dtype == VT_BF16) {
        size_t piece = t->numel < VT__STAGE_PIECE ? t->numel : VT__STAGE_PIECE;
        void *stage;
        VT__TRY(vt__tmp(cu, VT__T_STAGE, piece * 4, &stage));
        for (size_t at = 0; at < t->numel; at += piece) {
            size_t n = t->numel - at < piece ? t->numel - at : piece;
            VT_CUDA_TRY(cu, vt_cuk_convert(cu->stream, stage, VT_CUK_F32,
                                           (const uint16_t *)t->data + at, VT_CUK_BF16, n));
            VT_CUDA_TRY(cu, cudaMemcpyAsync((float *)host + at, stage, n * 4,
                                            cudaMemcpyDeviceToHost, cu->stream));
        }
        VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
        return 0;
    }
    VT_CUDA_TRY(cu, cudaMemcpyAsync(host, t->data, t->numel * vt_dtype_size(t->dtype),
                                    cudaMemcpyDeviceToHost, cu->stream));
    VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return 0;
}

static int vt__cuda_zero(vt_backend *be, vt_tensor *t)
{
    vt_cuda *cu = vt__cu(be);
    VT__OP(cu);
    vt__host_wrote(cu, t);
    VT_CUDA_TRY(cu, cudaMemsetAsync(t->data, 0, t->numel * vt_dtype_size(t->dtype), cu->stream));
    return 0;
}

static int vt__cuda_copy(vt_backend *be, vt_tensor *dst, const vt_tensor *src)
{
    vt_cuda *cu = vt__cu(be);
    VT__OP(cu);
    vt__host_wrote(cu, dst);
    if (dst->data == src->data)
        return 0;
    VT_CUDA_TRY(cu, cudaMemcpyAsync(dst->data, src->data, src->numel * vt_dtype_size(src->dtype),
                                    cudaMemcpyDeviceToDevice, cu->stream));
    return 0;
}

static int vt__cuda_copy_bytes(vt_backend *be, vt_tensor *dst, size_t dst_off,
                               const vt_tensor *src, size_t src_off, size_t n)
{
    vt_cuda *cu = vt__cu(be);
    char *d = (char *)dst->data + dst_off;
    const char *s = (const char *)src->data + src_off;
    VT__OP(cu);
    vt__host_wrote(cu, dst);
    if (n == 0 || d == s)
        return 0;
    if (dst->data == src->data && d < s + n && s < d + n) {
        /* overlapping ranges of one tensor: memmove through scratch */
        void *tmp;
        VT__TRY(vt__tmp(cu, VT__T_COPY, n, &tmp));
        VT_CUDA_TRY(cu, cudaMemcpyAsync(tmp, s, n, cudaMemcpyDeviceToDevice, cu->stream));
        s = (const char *)tmp;
    }
    VT_CUDA_TRY(cu, cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, cu->stream));
    return 0;
}

static int vt__cuda_move_rows(vt_backend *be, vt_tensor *dst, const int *dst_rows,
                              const vt_tensor *src, const int *src_rows, int n,
                              size_t row_bytes)
{
    vt_cuda *cu = vt__cu(be);
    vt_cuk_rowmap map;
    void *d, *s;
    VT__HOST_OP(cu, "row gather or scatter");
    vt__host_wrote(cu, dst);
    VT__TRY(vt__hptr(cu, dst, &d));
    VT__TRY(vt__hptr(cu, src, &s));
    for (int first = 0; first < n; first += VT_CUK_ROWS_MAX) {
        map.n = n - first < VT_CUK_ROWS_MAX ? n - first : VT_CUK_ROWS_MAX;
        for (int i = 0; i < map.n; i++) {
            map.dst[i] = dst_rows ? dst_rows[first + i] : first + i;
            map.src[i] = src_rows ? src_rows[first + i] : first + i;
        }
        VT_CUDA_TRY(cu, vt_cuk_move_rows(cu->stream, d, s, row_bytes, &map));
    }
    return 0;
}

/* Waits for the stream, then hands the pending softmax results to their
 * sums in the order they were queued. */
static int vt__cuda_sync(vt_backend *be)
{
    vt_cuda *cu = vt__cu(be);
    int n = cu->nxent, rc = 0;
    VT__HOST_OP(cu, "sync");
    /* delivered now or never: after a failed sync, whoever waited for them
     * may free their targets, which a later sync must not write */
    cu->nxent = 0;
    VT__TRY(vt__rec_collect(cu));
    VT_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    rc = vt__rec_deliver(cu);
    for (int k = 0; k < n; k++) {
        const vt_cuk_xent *r = &cu->hres[k];
        if (r->bad && rc == 0)
            rc = vt_error_set(VT_EINVAL, "label %d outside 0..%d", r->bad_label,
                              cu->xent_c[k] - 1);
        if (cu->xent_to[k]) {
            cu->xent_to[k]->loss += r->loss;
            cu->xent_to[k]->correct += r->correct;
        }
    }
    return rc;
}

static vt_dtype vt__cuda_act_dtype(const vt_backend *be, const char *precision)
{
    (void)be;
    return precision && strcmp(precision, "fp32") == 0 ? VT_F32 : VT_BF16;
}

/* Frees everything the backend made; safe on a partly initialised one. */
static void vt__cuda_free_impl(vt_cuda *cu)
{
    if (!cu)
        return;
    if (cu->stream && cudaStreamSynchronize(cu->stream) != cudaSuccess)
        (void)cudaGetLastError();
    for (int i = 0; i < cu->nplans; i++)
        vt__conv_plan_free(cu->plans[i]);
    free(cu->plans);
    for (int i = 0; i < cu->ngplans; i++)
        vt__gemm_plan_free(cu->gplans[i]);
    free(cu->gplans);
    for (int i = 0; i < VT__NTMP; i++)
        if (cu->tmp[i])
            cudaFree(cu->tmp[i]);
    if (cu->ws)
        cudaFree(cu->ws);
    if (cu->lt_ws)
        cudaFree(cu->lt_ws);
    if (cu->dres)
        cudaFree(cu->dres);
    if (cu->hres)
        cudaFreeHost(cu->hres);
    for (int i = 0; i < cu->nhbuf; i++) /* their owners should have freed them */
        cudaFreeHost(cu->hbuf[i].p);
    free(cu->hbuf);
    free(cu->touched);
    free(cu->pending);
    free(cu->late_free);
    if (cu->uploaded)
        cudaEventDestroy(cu->uploaded);
    if (cu->relu)
        cudnnDestroyActivationDescriptor(cu->relu);
    if (cu->dnn)
        cudnnDestroy(cu->dnn);
    if (cu->lt)
        cublasLtDestroy(cu->lt);
    if (cu->blas)
        cublasDestroy(cu->blas);
    if (cu->stream)
        cudaStreamDestroy(cu->stream);
    (void)cudaGetLastError();
    free(cu);
}

static void vt__cuda_destroy(vt_backend *be)
{
    vt__cuda_free_impl(vt__cu(be));
    be->impl = NULL;
}

static vt_backend_ops vt__cuda_make_ops(void)
{
    vt_backend_ops o;
    memset(&o, 0, sizeof o);
    o.alloc = vt__cuda_alloc;
    o.release = vt__cuda_release;
    o.upload = vt__cuda_upload;
    o.download = vt__cuda_download;
    o.zero = vt__cuda_zero;
    o.copy = vt__cuda_copy;
    o.copy_bytes = vt__cuda_copy_bytes;
    o.move_rows = vt__cuda_move_rows;
    o.sync = vt__cuda_sync;
    o.host_alloc = vt__cuda_host_alloc;
    o.host_free = vt__cuda_host_free;
    o.host_fence = vt__cuda_host_fence;
    o.act_dtype = vt__cuda_act_dtype;
    o.record_begin = vt__cuda_record_begin;
    o.record_end = vt__cuda_record_end;
    o.recording_free = vt__cuda_recording_free;
    o.destroy = vt__cuda_destroy;
    o.images_to_input = vt__cuda_images_to_input;
    o.images_resize = vt__cuda_images_resize;
    o.conv_fwd = vt__cuda_conv_fwd;
    o.conv_bwd_data = vt__cuda_conv_bwd_data;
    o.conv_bwd_filter = vt__cuda_conv_bwd_filter;
    o.relu_bwd = vt__cuda_relu_bwd;
    o.maxpool_fwd = vt__cuda_maxpool_fwd;
    o.maxpool_bwd = vt__cuda_maxpool_bwd;
    o.dense_fwd = vt__cuda_dense_fwd;
    o.dense_bwd = vt__cuda_dense_bwd;
    o.dropout_fwd = vt__cuda_dropout_fwd;
    o.dropout_bwd = vt__cuda_dropout_bwd;
    o.softmax_xent = vt__cuda_softmax_xent;
    o.sgd_update = vt__cuda_sgd_update;
    return o;
}

static const vt_backend_ops vt__cuda_ops = vt__cuda_make_ops();

/* ---- construction ---------------------------------------------------------------- */

static int vt__cuda_setup(vt_cuda *cu, vt_backend *be)
{
    int count = 0, drv = 0, rt = 0;
    size_t dnn_ver;
    cudaDeviceProp prop;
    cudaError_t e;

    /* No device or no driver: say why, quickly, without touching anything else. */
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return vt_error_set(VT_EUNSUPPORTED, "no usable CUDA device: %s (%s)%s", cudaGetErrorString(e),
                            cudaGetErrorName(e),
                            e == cudaErrorInsufficientDriver
                                ? "; no NVIDIA driver is loaded, or it is older than this "
                                  "build's CUDA runtime"
                                : "");
    }
    if (count <= 0)
        return vt_error_set(VT_EUNSUPPORTED, "no CUDA device found");
    if (cudaDriverGetVersion(&drv) == cudaSuccess && cudaRuntimeGetVersion(&rt) == cudaSuccess &&
        drv < rt)
        return vt_error_set(VT_EUNSUPPORTED,
                            "the NVIDIA driver supports CUDA %d.%d but this build needs %d.%d: "
                            "update the driver",
                            drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    (void)cudaGetLastError();
    cu->device = vt__env_int("VT_CUDA_DEVICE", 0);
    if (cu->device < 0 || cu->device >= count)
        return vt_error_set(VT_EINVAL, "VT_CUDA_DEVICE=%d but there %s %d CUDA device%s",
                            cu->device, count == 1 ? "is" : "are", count, count == 1 ? "" : "s");
    VT_CUDA_TRY(cu, cudaSetDevice(cu->device));
    VT_CUDA_TRY(cu, cudaGetDeviceProperties(&prop, cu->device));
    if (prop.major < 8)
        return vt_error_set(VT_EUNSUPPORTED,
                            "%s (compute capability %d.%d) lacks bf16 tensor cores; the cuda "
                            "backend needs 8.0 or newer",
                            prop.name, prop.major, prop.minor);
    VT_CUDA_TRY(cu, cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking));
    VT_CUDA_TRY(cu, cudaEventCreateWithFlags(&cu->uploaded, cudaEventDisableTiming));
    e = vt_cuk_probe(cu->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(cu->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return vt_error_set(VT_EUNSUPPORTED,
                            "this build has no GPU code for %s (sm_%d%d): %s; rebuild with "
                            "CMAKE_CUDA_ARCHITECTURES including %d%d",
                            prop.name, prop.major, prop.minor, cudaGetErrorString(e), prop.major,
                            prop.minor);
    }
    dnn_ver = cudnnGetVersion();
    if (dnn_ver < 90000)
        return vt_error_set(VT_EUNSUPPORTED, "cuDNN %zu.%zu is too old: the cuda backend needs 9",
                            dnn_ver / 1000, dnn_ver % 1000 / 100);
    VT_CUDNN_TRY(cu, cudnnCreate(&cu->dnn));
    VT_CUDNN_TRY(cu, cudnnSetStream(cu->dnn, cu->stream));
    VT_CUDNN_TRY(cu, cudnnCreateActivationDescriptor(&cu->relu));
    VT_CUDNN_TRY(cu, cudnnSetActivationDescriptor(cu->relu, CUDNN_ACTIVATION_RELU,
                                                  CUDNN_NOT_PROPAGATE_NAN, 0.0));
    VT_CUBLAS_TRY(cu, cublasCreate(&cu->blas));
    VT_CUBLAS_TRY(cu, cublasSetStream(cu->blas, cu->stream));
    VT_CUBLAS_TRY(cu, cublasLtCreate(&cu->lt));
    /* 32 MiB: cuBLAS's recommendation for Hopper; shared by cuBLAS and
     * cuBLASLt, which only ever run one at a time on the one stream. */
    cu->lt_ws_size = (size_t)32 << 20;
    VT__TRY(vt__dmalloc(cu, &cu->lt_ws, cu->lt_ws_size, "the cuBLAS workspace"));
    vt__mem_add(cu, cu->lt_ws_size);
    VT_CUBLAS_TRY(cu, cublasSetWorkspace(cu->blas, cu->lt_ws, cu->lt_ws_size));
    VT__TRY(vt__dmalloc(cu, (void **)&cu->dres, sizeof *cu->dres * VT__XENT_SLOTS,
                        "softmax results"));
    VT_CUDA_TRY(cu, cudaMallocHost((void **)&cu->hres, sizeof *cu->hres * VT__XENT_SLOTS));

    {
        size_t fr = 0, tot = 0;
        VT_CUDA_TRY(cu, cudaMemGetInfo(&fr, &tot));
        be->mem_total = tot;
    }
    be->resize_images = 1; /* the host only decodes (see backend.h) */
    snprintf(be->device, sizeof be->device, "%.60s, %.0f GiB, cuDNN %zu.%zu.%zu, sm_%d%d%s", prop.name,
             be->mem_total / VT__GIB, dnn_ver / 10000, dnn_ver % 10000 / 100, dnn_ver % 100,
             prop.major, prop.minor, cu->tf32 ? ", tf32" : "");
    return 0;
}

extern "C" int vt_cuda_backend_init(vt_backend *be)
{
    vt_cuda *cu = (vt_cuda *)calloc(1, sizeof *cu);
    const char *search = getenv("VT_CUDA_CONV_SEARCH"), *small = getenv("VT_CUDA_SMALL_CONV");
    int rc;

    if (!cu)
        return vt_error_set(VT_ENOMEM, "out of memory creating the CUDA backend");
    cu->be = be;
    cu->tf32 = vt__env_int("VT_CUDA_TF32", 0) != 0;
    cu->fuse = vt__env_int("VT_CUDA_FUSE", 1) != 0;
    cu->pad = vt__env_int("VT_CUDA_PAD", 1) != 0;
    cu->find = !(search && strcmp(search, "heuristic") == 0);
    cu->deterministic = vt__env_int("VT_CUDA_DETERMINISTIC", 0) != 0;
    cu->verbose = vt__env_int("VT_CUDA_VERBOSE", 0) != 0;
    cu->graphs = vt__env_int("VT_CUDA_GRAPHS", 0) != 0;
    cu->small = !small || !*small || strcmp(small, "auto") == 0 ? VT__SMALL_AUTO
                : strcmp(small, "own") == 0                     ? VT__SMALL_OWN
                : strcmp(small, "cudnn") == 0                   ? VT__SMALL_CUDNN
                                                                : -1;
    if (cu->small < 0) {
        free(cu);
        return vt_error_set(VT_EINVAL, "VT_CUDA_SMALL_CONV=%s: expected auto, own or cudnn",
                            small);
    }
    rc = vt__env_int("VT_CUDA_WORKSPACE_MIB", 1024);
    cu->ws_limit = (size_t)(rc > 0 ? rc : 0) << 20;
    if ((rc = vt__cuda_setup(cu, be)) < 0) {
        vt__cuda_free_impl(cu);
        be->mem_in_use = be->mem_peak = 0;
        return rc;
    }
    be->ops = &vt__cuda_ops;
    be->impl = cu;
    snprintf(be->name, sizeof be->name, "cuda");
    return 0;
}
