/* model.c - VGG16 forward, backward and update on a backend (see model.h).
 *
 * Buffers, for batch n (every activation tensor is allocated for max_batch
 * and reshaped to n):
 *   input     (n, S, S, 3)            preprocessed images
 *   features  (n, s, s, c)            the cut: output of the last frozen pool
 *   tc[i].out (n, h, h, cout)         trainable conv i after ReLU
 *   tc[i].pool(n, h/2, h/2, cout)     after the block's pool (last conv only)
 *   d[j].out  (n, out_j)              dense j after ReLU and dropout (logits
 *                                     for the last layer)
 *   g[0..1]   ping-pong gradients, each as large as the largest of the above
 *   trunk scratch[0..1] frozen forward ping-pong, scratch[2] the output of
 *                       its chunked part (see vt__frozen_plan)
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/rng.h"

struct vt_trunk {
    vt_backend *be;
    vt_tensor *w[VT_VGG_NCONV]; /* (cout, 3, 3, cin) KRSC, f32 */
    vt_tensor *b[VT_VGG_NCONV]; /* (cout) */
    /* Frozen-pass scratch per activation dtype (f32 and bf16 jobs may share
     * a trunk): scratch[d][0..1] the ping-pong pair, cap[d][0] elements
     * each; scratch[d][2] the chunked part's output, cap[d][1] elements (see
     * vt__frozen_plan); NULL until needed. */
    vt_tensor *scratch[2][3];
    size_t cap[2][2];
};

/* Index of an activation dtype in the scratch table. */
static int vt__di(vt_dtype dt) { return dt == VT_BF16; }

typedef struct {
    int conv;                    /* index into vt_vgg16 */
    vt_tensor *w, *b;            /* (cout,3,3,cin), (cout) */
    vt_tensor *gw, *gb, *vw, *vb; /* gradients and velocities, same shapes */
    vt_tensor *out;              /* (n, h, h, cout) after ReLU */
    vt_tensor *pool;             /* (n, h/2, h/2, cout) or NULL */
} vt__tconv;

typedef struct {
    vt_tensor *w, *b;            /* (out, in), (out) */
    vt_tensor *gw, *gb, *vw, *vb;
    vt_tensor *out;              /* (n, out) */
    vt_tensor *mask;             /* (n, out) dropout mask, or NULL */
} vt__dense;

#define VT__MAX_PARAMS (2 * (VT_VGG_NCONV + VT_MAX_DENSE))

struct vt_model {
    vt_backend *be;
    vt_trunk *trunk;
    vt_model_opts o;
    int S, first, ntconv, ndense, nclasses, batch;
    int cut_side, cut_ch;
    vt_tensor *input;    /* (n, S, S, 3) */
    vt_tensor *features; /* (n, s, s, c) */
    vt_tensor *labels;   /* (n) int32 */
    vt_tensor *dlogits;  /* (n, C) */
    vt_tensor *probs;    /* (n, C) */
    vt_tensor *g[2];     /* gradient ping-pong, 1-D of g_cap */
    vt__tconv tc[VT_VGG_NCONV];
    vt__dense d[VT_MAX_DENSE];
    /* The training step at max_batch as a recorded sequence (backend.h):
     * made after one plain step at that size, replayed from then on. */
    vt_recording *rec;
    int rec_warm;     /* a plain step at max_batch has run since the last recording */
    int rec_off;      /* the backend does not record, or recording kept failing */
    int rec_failures; /* recordings that failed in a row */
    long replays;     /* steps that ran as replays */
    int nparams;
    char names[VT__MAX_PARAMS][32];
    vt_tensor *param[VT__MAX_PARAMS], *velocity[VT__MAX_PARAMS], *grad[VT__MAX_PARAMS];
};

/* ---- small tensor helpers ---------------------------------------------- */

static int vt__new(vt_tensor **t, vt_backend *be, vt_dtype dt, int ndim, int d0, int d1,
                   int d2, int d3)
{
    int dims[4] = {d0, d1, d2, d3};
    return vt_tensor_new(t, be, dt, ndim, dims);
}

static int vt__new_upload(vt_tensor **t, vt_backend *be, int ndim, const int *dims,
                          const float *host)
{
    int rc = vt_tensor_new(t, be, VT_F32, ndim, dims);
    return rc < 0 ? rc : vt_tensor_upload(*t, host);
}

/* Reshapes t to batch n keeping its other dimensions. */
static int vt__batch(vt_tensor *t, int n)
{
    int dims[VT_MAX_DIMS], nd;
    if (!t)
        return 0;
    nd = vt_tensor_ndim(t);
    for (int i = 0; i < nd; i++)
        dims[i] = vt_tensor_dim(t, i);
    dims[0] = n;
    return vt_tensor_reshape(t, nd, dims);
}

/* Views the 1-D buffer buf as a tensor shaped like ref. */
static vt_tensor *vt__like(vt_tensor *buf, const vt_tensor *ref)
{
    int dims[VT_MAX_DIMS], nd = vt_tensor_ndim(ref);
    for (int i = 0; i < nd; i++)
        dims[i] = vt_tensor_dim(ref, i);
    return vt_tensor_reshape(buf, nd, dims) < 0 ? NULL : buf;
}

static size_t vt__bytes(const vt_tensor *t)
{
    size_t n = t ? vt_tensor_numel(t) : 0;
    return t && (vt_tensor_dtype(t) == VT_BF16) ? 2 * n : 4 * n;
}

/* ---- trunk ------------------------------------------------------------- */

int vt_trunk_create(vt_trunk **out, vt_backend *be, const vt_params *p)
{
    vt_trunk *t = calloc(1, sizeof *t);
    int rc = 0;

    *out = NULL;
    if (!t)
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->be = be;
    for (int i = 0; i < VT_VGG_NCONV && rc == 0; i++) {
        int wd[4] = {vt_vgg16[i].cout, 3, 3, vt_vgg16[i].cin}, bd[1] = {vt_vgg16[i].cout};
        rc = vt__new_upload(&t->w[i], be, 4, wd, p->conv_w[i]);
        if (rc == 0)
            rc = vt__new_upload(&t->b[i], be, 1, bd, p->conv_b[i]);
    }
    if (rc < 0) {
        vt_trunk_free(t);
        return vt_error_wrap(rc, "uploading the frozen trunk");
    }
    *out = t;
    return 0;
}

void vt_trunk_trim(vt_trunk *t)
{
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 3; k++) {
            vt_tensor_free(t->scratch[d][k]);
            t->scratch[d][k] = NULL;
        }
        t->cap[d][0] = t->cap[d][1] = 0;
    }
}

void vt_trunk_free(vt_trunk *t)
{
    if (!t)
        return;
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        vt_tensor_free(t->w[i]);
        vt_tensor_free(t->b[i]);
    }
    vt_trunk_trim(t);
    free(t);
}

size_t vt_trunk_weight_bytes(const vt_trunk *t)
{
    size_t n = 0;
    for (int i = 0; i < VT_VGG_NCONV; i++)
        n += vt__bytes(t->w[i]) + vt__bytes(t->b[i]);
    return n;
}

size_t vt_trunk_scratch_bytes(const vt_trunk *t)
{
    return (2 * t->cap[0][0] + t->cap[0][1]) * 4 + (2 * t->cap[1][0] + t->cap[1][1]) * 2;
}

/* Elements of one image's activation after conv i. */
static size_t vt__act_per_image(int S, int i)
{
    size_t side = (size_t)vt_vgg_side(S, vt_vgg16[i].block - 1);
    return side * side * (size_t)vt_vgg16[i].cout;
}

/* The largest of convs [from, to)'s activations per image (0: none). */
static size_t vt__act_max(int S, int from, int to)
{
    size_t most = 0;
    for (int i = from; i < to; i++) {
        size_t e = vt__act_per_image(S, i);
        most = e > most ? e : most;
    }
    return most;
}

/* How a frozen pass over convs [0, first) of n images runs.  It keeps no
 * activations, so it need not hold the whole batch's largest one (block
 * 1's, 3.2M elements per image at 224) twice: its early blocks, whose
 * activations are large, run in equal chunks of images, and from the first
 * block whose activations fit for the whole batch on it runs on the whole
 * batch (small layers want many rows).  "Fit" is VT_FROZEN_CHUNK_MIB
 * (default 200; 0 or less = no chunks) per buffer, at least one image.  A
 * batch plans as its model's max_batch does (vt_model_extract), so that the
 * scratch never outgrows vt_model_estimate's figure.  At 224 in
 * bf16: batch 64 runs block 1 in chunks of 32 and blocks 2-4 whole; batch
 * 256 blocks 1-3 in chunks of 32 and block 4 whole. */
typedef struct {
    int split;   /* convs [0, split) run in chunks (split = 0: no chunks) */
    int chunk;   /* images per chunk */
    size_t pair; /* elements of each ping-pong buffer */
    size_t mid;  /* elements of the chunked part's whole-batch output (0 when
                    split = first: the chunks go straight to the features) */
} vt__frozen_plan;

static vt__frozen_plan vt__frozen_plan_of(int S, int first, int n, size_t act_size)
{
    const char *env = getenv("VT_FROZEN_CHUNK_MIB");
    char *end = NULL;
    long mib = env && *env ? strtol(env, &end, 10) : 200;
    if (end && *end) /* not a number: the default */
        mib = 200;
    size_t budget = mib > 0 ? ((size_t)mib << 20) / act_size : 0, head, most;
    vt__frozen_plan p = {0, n, (size_t)n * vt__act_max(S, 0, first), 0};
    int parts;

    if (budget == 0 || p.pair <= budget)
        return p;
    p.split = first;
    for (int i = first - 1; i > 0; i--) /* the earliest block start that fits */
        if (vt_vgg16[i - 1].last_in_block && (size_t)n * vt__act_max(S, i, first) <= budget)
            p.split = i;
    head = vt__act_max(S, 0, p.split);
    most = budget / head ? budget / head : 1;
    parts = (int)(((size_t)n + most - 1) / most);
    if (parts == 1) /* one image is over budget, and there is one: no chunks */
        return (vt__frozen_plan){0, n, p.pair, 0};
    p.chunk = (n + parts - 1) / parts;
    p.pair = (size_t)p.chunk * head;
    if ((size_t)n * vt__act_max(S, p.split, first) > p.pair)
        p.pair = (size_t)n * vt__act_max(S, p.split, first);
    if (p.split < first) /* the pool output of the chunked part's last conv */
        p.mid = (size_t)n * vt__act_per_image(S, p.split - 1) / 4;
    return p;
}

/* Elements the frozen passes of batches up to n need in all their scratch
 * buffers. */
static size_t vt__scratch_need(int S, int first, int n, size_t act_size)
{
    vt__frozen_plan p = vt__frozen_plan_of(S, first, n, act_size);
    return 2 * p.pair + p.mid;
}

/* Makes sure the scratch buffers of dtype dt hold `pair` elements each
 * (the ping-pong pair) and `mid` (the chunked part's output). */
static int vt__trunk_reserve(vt_trunk *t, vt_dtype dt, size_t pair, size_t mid)
{
    int d = vt__di(dt), rc = 0;
    size_t want[2] = {pair, mid};
    for (int g = 0; g < 2; g++) {
        if (want[g] <= t->cap[d][g])
            continue;
        for (int k = 0; k < 3; k++) /* buffer k is sized by cap[d][k / 2] */
            if (k / 2 == g) {
                vt_tensor_free(t->scratch[d][k]);
                t->scratch[d][k] = NULL;
            }
        t->cap[d][g] = want[g];
    }
    /* (rows of 1024: a 1-D tensor counts its elements in an int) */
    for (int k = 0; k < 3 && rc == 0; k++)
        if (!t->scratch[d][k] && t->cap[d][k / 2])
            rc = vt__new(&t->scratch[d][k], t->be, dt, 2, (int)((t->cap[d][k / 2] + 1023) / 1024),
                         1024, 0, 0);
    if (rc < 0) { /* none of this dtype's, so that the sizes stay true */
        for (int k = 0; k < 3; k++) {
            vt_tensor_free(t->scratch[d][k]);
            t->scratch[d][k] = NULL;
        }
        t->cap[d][0] = t->cap[d][1] = 0;
    }
    return rc;
}

/* ---- model construction ------------------------------------------------ */

static int vt__add_param(vt_model *m, const char *name, vt_tensor *w, vt_tensor *g,
                         vt_tensor *v)
{
    snprintf(m->names[m->nparams], sizeof m->names[0], "%s", name);
    m->param[m->nparams] = w;
    m->grad[m->nparams] = g;
    m->velocity[m->nparams] = v;
    m->nparams++;
    return 0;
}

/* Allocates w, b (uploaded from host), their gradients and velocities. */
static int vt__make_params(vt_model *m, int ndim, const int *wdims, const float *w,
                           const float *b, vt_tensor **tw, vt_tensor **tb,
                           vt_tensor **gw, vt_tensor **gb, vt_tensor **vw,
                           vt_tensor **vb)
{
    int bd[1] = {wdims[0]}, rc;
    if ((rc = vt__new_upload(tw, m->be, ndim, wdims, w)) < 0 ||
        (rc = vt__new_upload(tb, m->be, 1, bd, b)) < 0 ||
        (rc = vt_tensor_new(gw, m->be, VT_F32, ndim, wdims)) < 0 ||
        (rc = vt_tensor_new(gb, m->be, VT_F32, 1, bd)) < 0 ||
        (rc = vt_tensor_new(vw, m->be, VT_F32, ndim, wdims)) < 0 ||
        (rc = vt_tensor_new(vb, m->be, VT_F32, 1, bd)) < 0)
        return rc;
    return 0;
}

int vt_model_create(vt_model **out, vt_trunk *trunk, const vt_params *p,
                    const vt_model_opts *opts)
{
    vt_model *m;
    vt_backend *be = trunk->be;
    int rc = 0, N = opts->max_batch;
    size_t gcap;
    char name[32];

    *out = NULL;
    if (opts->trainable_blocks < 0 || opts->trainable_blocks > 5)
        return vt_error_set(VT_EINVAL, "trainable_blocks %d is outside 0..5",
                            opts->trainable_blocks);
    if (N < 1)
        return vt_error_set(VT_EINVAL, "batch size must be positive");
    if (!(m = calloc(1, sizeof *m)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    m->be = be;
    m->trunk = trunk;
    m->o = *opts;
    m->S = p->image_size;
    m->first = vt_vgg_first_trainable(opts->trainable_blocks);
    m->ntconv = VT_VGG_NCONV - m->first;
    m->ndense = p->ndense;
    m->nclasses = p->nclasses;
    m->batch = N;
    vt_vgg_cut_shape(m->S, opts->trainable_blocks, &m->cut_side, &m->cut_ch);
    gcap = (size_t)N * m->cut_side * m->cut_side * m->cut_ch;

    if ((rc = vt__new(&m->input, be, opts->act, 4, N, m->S, m->S, 3)) < 0 ||
        (rc = vt__new(&m->features, be, opts->act, 4, N, m->cut_side, m->cut_side,
                      m->cut_ch)) < 0 ||
        (rc = vt__new(&m->labels, be, VT_I32, 1, N, 0, 0, 0)) < 0 ||
        (rc = vt__new(&m->dlogits, be, VT_F32, 2, N, m->nclasses, 0, 0)) < 0 ||
        (rc = vt__new(&m->probs, be, VT_F32, 2, N, m->nclasses, 0, 0)) < 0)
        goto fail;

    for (int k = 0; k < m->ntconv; k++) {
        vt__tconv *c = &m->tc[k];
        const vt_vgg_conv *info = &vt_vgg16[m->first + k];
        int side = vt_vgg_side(m->S, info->block - 1);
        int wd[4] = {info->cout, 3, 3, info->cin};
        c->conv = m->first + k;
        if ((rc = vt__make_params(m, 4, wd, p->conv_w[c->conv], p->conv_b[c->conv], &c->w,
                                  &c->b, &c->gw, &c->gb, &c->vw, &c->vb)) < 0 ||
            (rc = vt__new(&c->out, be, opts->act, 4, N, side, side, info->cout)) < 0)
            goto fail;
        if (info->last_in_block &&
            (rc = vt__new(&c->pool, be, opts->act, 4, N, side / 2, side / 2,
                          info->cout)) < 0)
            goto fail;
        size_t e = (size_t)N * side * side * info->cout;
        gcap = e > gcap ? e : gcap;
        snprintf(name, sizeof name, "features.%d.weight", info->torch_index);
        vt__add_param(m, name, c->w, c->gw, c->vw);
        snprintf(name, sizeof name, "features.%d.bias", info->torch_index);
        vt__add_param(m, name, c->b, c->gb, c->vb);
    }
    for (int j = 0; j < m->ndense; j++) {
        vt__dense *d = &m->d[j];
        int wd[2] = {p->dense_out[j], p->dense_in[j]};
        if ((rc = vt__make_params(m, 2, wd, p->dense_w[j], p->dense_b[j], &d->w, &d->b,
                                  &d->gw, &d->gb, &d->vw, &d->vb)) < 0 ||
            (rc = vt__new(&d->out, be, opts->act, 2, N, p->dense_out[j], 0, 0)) < 0)
            goto fail;
        if (j < m->ndense - 1 && opts->dropout > 0.0f &&
            (rc = vt__new(&d->mask, be, VT_F32, 2, N, p->dense_out[j], 0, 0)) < 0)
            goto fail;
        size_t e = (size_t)N * p->dense_out[j];
        gcap = e > gcap ? e : gcap;
        snprintf(name, sizeof name, "head.%d.weight", j);
        vt__add_param(m, name, d->w, d->gw, d->vw);
        snprintf(name, sizeof name, "head.%d.bias", j);
        vt__add_param(m, name, d->b, d->gb, d->vb);
    }
    for (int k = 0; k < 2; k++)
        if ((rc = vt__new(&m->g[k], be, opts->act, 1, (int)gcap, 0, 0, 0)) < 0)
            goto fail;
    *out = m;
    return 0;
fail:
    vt_model_free(m);
    return vt_error_wrap(rc, "creating the model (batch %d, image %d)", N, p->image_size);
}

void vt_model_free(vt_model *m)
{
    if (!m)
        return;
    vt_recording_free(m->be, m->rec); /* before the tensors it refers to */
    vt_tensor *all[] = {m->input, m->features, m->labels, m->dlogits, m->probs, m->g[0],
                        m->g[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        vt_tensor_free(all[i]);
    for (int k = 0; k < m->ntconv; k++) {
        vt__tconv *c = &m->tc[k];
        vt_tensor *t[] = {c->w, c->b, c->gw, c->gb, c->vw, c->vb, c->out, c->pool};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            vt_tensor_free(t[i]);
    }
    for (int j = 0; j < m->ndense; j++) {
        vt__dense *d = &m->d[j];
        vt_tensor *t[] = {d->w, d->b, d->gw, d->gb, d->vw, d->vb, d->out, d->mask};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            vt_tensor_free(t[i]);
    }
    free(m);
}

size_t vt_model_estimate(const vt_params *p, const vt_model_opts *o, size_t act_size,
                         size_t *scratch_bytes)
{
    int S = p->image_size, N = o->max_batch, first = vt_vgg_first_trainable(o->trainable_blocks);
    int side, ch;
    size_t params = 0, acts = 0, gmax;

    vt_vgg_cut_shape(S, o->trainable_blocks, &side, &ch);
    acts += (size_t)N * S * S * 3 + (size_t)N * side * side * ch;
    gmax = (size_t)N * side * side * ch;
    for (int i = first; i < VT_VGG_NCONV; i++) {
        size_t s = (size_t)vt_vgg_side(S, vt_vgg16[i].block - 1);
        size_t e = (size_t)N * s * s * vt_vgg16[i].cout;
        params += (size_t)vt_vgg_conv_numel(i) + (size_t)vt_vgg16[i].cout;
        acts += e + (vt_vgg16[i].last_in_block ? e / 4 : 0);
        gmax = e > gmax ? e : gmax;
    }
    for (int j = 0; j < p->ndense; j++) {
        size_t e = (size_t)N * p->dense_out[j];
        params += (size_t)p->dense_in[j] * p->dense_out[j] + (size_t)p->dense_out[j];
        acts += e * (o->dropout > 0 && j < p->ndense - 1 ? 2 : 1);
        gmax = e > gmax ? e : gmax;
    }
    if (scratch_bytes)
        *scratch_bytes = vt__scratch_need(S, first, N, act_size) * act_size;
    /* weights, gradients, velocities in f32; activations and the two
     * gradient buffers in the activation dtype; labels, dlogits, probs. */
    return 3 * params * 4 + (acts + 2 * gmax) * act_size +
           (size_t)N * (4 + 8 * (size_t)p->nclasses);
}


/* ---- passes ------------------------------------------------------------ */

int vt_model_set_batch(vt_model *m, int n)
{
    int rc = 0;
    if (n < 1 || n > m->o.max_batch)
        return vt_error_set(VT_EINVAL, "batch %d is outside 1..%d", n, m->o.max_batch);
    if (n == m->batch)
        return 0;
    vt_tensor *t[] = {m->input, m->features, m->labels, m->dlogits, m->probs};
    for (size_t i = 0; i < sizeof t / sizeof t[0] && rc == 0; i++)
        rc = vt__batch(t[i], n);
    for (int k = 0; k < m->ntconv && rc == 0; k++) {
        rc = vt__batch(m->tc[k].out, n);
        if (rc == 0 && m->tc[k].pool)
            rc = vt__batch(m->tc[k].pool, n);
    }
    for (int j = 0; j < m->ndense && rc == 0; j++) {
        rc = vt__batch(m->d[j].out, n);
        if (rc == 0 && m->d[j].mask)
            rc = vt__batch(m->d[j].mask, n);
    }
    if (rc == 0)
        m->batch = n;
    return rc;
}

vt_tensor *vt_model_input(vt_model *m) { return m->input; }
vt_tensor *vt_model_features(vt_model *m) { return m->features; }

void vt_model_cut(const vt_model *m, int *side, int *channels)
{
    *side = m->cut_side;
    *channels = m->cut_ch;
}

/* The frozen convolutions [from, to) over the n images of `in` (the model's
 * input, rows of it, or scratch[2]), through the trunk's ping-pong scratch.
 * The last pool writes into out, or when out is NULL into a scratch buffer;
 * *result says which. */
static int vt__frozen_pass(vt_model *m, int from, int to, vt_tensor *in, int n, vt_tensor *out,
                           vt_tensor **result)
{
    vt_trunk *t = m->trunk;
    vt_tensor *cur = in, **scratch = t->scratch[vt__di(m->o.act)];
    int rc, k = in == scratch[0];

    for (int i = from; i < to; i++) {
        const vt_vgg_conv *c = &vt_vgg16[i];
        int side = vt_vgg_side(m->S, c->block - 1);
        int dims[4] = {n, side, side, c->cout};
        vt_tensor *dst = scratch[k];
        if ((rc = vt_tensor_reshape(dst, 4, dims)) < 0 ||
            (rc = vt_op_conv_fwd(m->be, cur, t->w[i], t->b[i], dst, 1)) < 0)
            return rc;
        cur = dst;
        k ^= 1;
        if (c->last_in_block) {
            vt_tensor *pool = out;
            if (i < to - 1 || !out) {
                int pd[4] = {n, side / 2, side / 2, c->cout};
                pool = scratch[k];
                if ((rc = vt_tensor_reshape(pool, 4, pd)) < 0)
                    return rc;
                k ^= 1;
            }
            if ((rc = vt_op_maxpool_fwd(m->be, cur, pool)) < 0)
                return rc;
            cur = pool;
        }
    }
    *result = cur;
    return 0;
}

int vt_model_extract(vt_model *m)
{
    vt_trunk *t = m->trunk;
    size_t act = m->o.act == VT_BF16 ? 2 : 4;
    int n = m->batch, rc;
    vt__frozen_plan p = vt__frozen_plan_of(m->S, m->first, m->o.max_batch, act);
    vt_tensor **scratch = t->scratch[vt__di(m->o.act)], *last, *mid;

    if (m->first == 0)
        return vt_tensor_copy(m->features, m->input);
    if ((rc = vt__trunk_reserve(t, m->o.act, p.pair, p.mid)) < 0)
        return vt_error_wrap(rc, "frozen pass scratch");
    if (p.split == 0 || n <= p.chunk) /* it all fits in the pair */
        return vt__frozen_pass(m, 0, m->first, m->input, n, m->features, &last);
    /* Each chunk reads its rows of the input and its last pool writes its
     * rows of the whole batch's output (the features, or scratch[2] for the
     * rest of the pass), through views: no copies. */
    mid = p.mid ? scratch[2] : m->features;
    if (p.mid) {
        const vt_vgg_conv *c = &vt_vgg16[p.split - 1];
        int side = vt_vgg_side(m->S, c->block);
        int dims[4] = {n, side, side, c->cout};
        if ((rc = vt_tensor_reshape(mid, 4, dims)) < 0)
            return rc;
    }
    for (int r = 0; r < n; r += p.chunk) {
        int c = n - r < p.chunk ? n - r : p.chunk;
        vt_tensor *in = NULL, *out = NULL;
        if ((rc = vt_tensor_view_rows(&in, m->input, r, c)) == 0 &&
            (rc = vt_tensor_view_rows(&out, mid, r, c)) == 0)
            rc = vt__frozen_pass(m, 0, p.split, in, c, out, &last);
        vt_tensor_free(in);
        vt_tensor_free(out);
        if (rc < 0)
            return rc;
    }
    if (p.mid)
        return vt__frozen_pass(m, p.split, m->first, mid, n, m->features, &last);
    return 0;
}

/* Forward through the trainable part; dropout only when a is not NULL. */
static int vt__forward(vt_model *m, const vt_step_args *a)
{
    vt_tensor *cur = m->features;
    int rc;
    for (int k = 0; k < m->ntconv; k++) {
        vt__tconv *c = &m->tc[k];
        if ((rc = vt_op_conv_fwd(m->be, cur, c->w, c->b, c->out, 1)) < 0)
            return rc;
        cur = c->out;
        if (c->pool) {
            if ((rc = vt_op_maxpool_fwd(m->be, cur, c->pool)) < 0)
                return rc;
            cur = c->pool;
        }
    }
    for (int j = 0; j < m->ndense; j++) {
        vt__dense *d = &m->d[j];
        int hidden = j < m->ndense - 1;
        if ((rc = vt_op_dense_fwd(m->be, cur, d->w, d->b, d->out, hidden)) < 0)
            return rc;
        if (a && d->mask) {
            uint64_t stream = ((uint64_t)VT_RNG_DROPOUT << 56) ^ (a->iteration << 4) ^ (uint64_t)j;
            if ((rc = vt_op_dropout_fwd(m->be, d->out, d->mask, m->o.dropout, a->seed,
                                        stream)) < 0)
                return rc;
        }
        cur = d->out;
    }
    return 0;
}

/* Output of the trainable layer before dense layer 0 (or conv k's input). */
static vt_tensor *vt__conv_input(vt_model *m, int k)
{
    if (k == 0)
        return m->features;
    return m->tc[k - 1].pool ? m->tc[k - 1].pool : m->tc[k - 1].out;
}

static int vt__backward(vt_model *m)
{
    vt_tensor *gcur = m->dlogits, *dx;
    int gi = 0, rc;

    for (int j = m->ndense - 1; j >= 0; j--) {
        vt__dense *d = &m->d[j];
        vt_tensor *x = j > 0 ? m->d[j - 1].out : vt__conv_input(m, m->ntconv);
        int need_dx = j > 0 || m->ntconv > 0;
        dx = need_dx ? vt__like(m->g[gi], x) : NULL;
        if (need_dx && !dx)
            return vt_error_set(VT_EINVAL, "gradient buffer too small");
        if ((rc = vt_op_dense_bwd(m->be, x, d->w, gcur, dx, d->gw, d->gb)) < 0)
            return rc;
        if (j > 0) {
            if (m->d[j - 1].mask && (rc = vt_op_dropout_bwd(m->be, m->d[j - 1].mask, dx)) < 0)
                return rc;
            if ((rc = vt_op_relu_bwd(m->be, m->d[j - 1].out, dx)) < 0)
                return rc;
        }
        gcur = dx;
        gi ^= 1;
    }
    for (int k = m->ntconv - 1; k >= 0; k--) {
        vt__tconv *c = &m->tc[k];
        vt_tensor *x = vt__conv_input(m, k);
        if (c->pool) {
            if (!(dx = vt__like(m->g[gi], c->out)))
                return vt_error_set(VT_EINVAL, "gradient buffer too small");
            if ((rc = vt_op_maxpool_bwd(m->be, c->out, c->pool, gcur, dx)) < 0)
                return rc;
            gcur = dx;
            gi ^= 1;
        }
        if ((rc = vt_op_relu_bwd(m->be, c->out, gcur)) < 0 ||
            (rc = vt_op_conv_bwd_filter(m->be, x, gcur, c->gw, c->gb)) < 0)
            return rc;
        if (k > 0) {
            if (!(dx = vt__like(m->g[gi], x)))
                return vt_error_set(VT_EINVAL, "gradient buffer too small");
            if ((rc = vt_op_conv_bwd_data(m->be, gcur, c->w, dx)) < 0)
                return rc;
            gcur = dx;
            gi ^= 1;
        }
    }
    return 0;
}

/* The step's device work: forward, loss, backward, updates (the labels are
 * on the device already). */
static int vt__step(vt_model *m, const vt_step_args *a, vt_xent_sums *sums)
{
    int rc;
    if ((rc = vt__forward(m, a)) < 0 ||
        (rc = vt_op_softmax_xent(m->be, m->d[m->ndense - 1].out, m->labels, m->dlogits,
                                 1.0f / (float)m->batch, NULL, sums)) < 0 ||
        (rc = vt__backward(m)) < 0)
        return rc;
    for (int i = 0; i < m->nparams; i++)
        if ((rc = vt_op_sgd_update(m->be, m->param[i], m->grad[i], m->velocity[i],
                                   &a->sgd)) < 0)
            return rc;
    return 0;
}

/* The step as a recorded sequence where the backend records (CUDA graphs):
 * only at max_batch (a last, smaller batch runs plainly), and only after a
 * plain step at that size, which has chosen the algorithms and sized the
 * backend's buffers.  A sequence that cannot be recorded or replayed runs
 * plainly; after three failures in a row the model stops trying. */
static int vt__step_recorded(vt_model *m, const vt_step_args *a, vt_xent_sums *sums)
{
    int rc, replay = m->rec != NULL;
    if (m->rec_off || m->batch != m->o.max_batch || (!m->rec && !m->rec_warm)) {
        m->rec_warm = m->batch == m->o.max_batch;
        return vt__step(m, a, sums);
    }
    rc = vt_record_begin(m->be, &m->rec);
    if (rc <= 0) {
        /* not supported, or not possible now (a plain step then shows the
         * real error, if any); 0: not this time */
        m->rec_off = rc < 0;
        m->rec_warm = 1;
        return vt__step(m, a, sums);
    }
    rc = vt__step(m, a, sums);
    if ((rc = vt_record_end(m->be, &m->rec, rc == 0)) < 0)
        return rc;
    if (rc == 1) {
        if (replay) { /* a recording that only ever captures is no gain */
            m->rec_failures = 0;
            m->replays++;
        }
        return 0;
    }
    if (++m->rec_failures >= 3)
        m->rec_off = 1;
    m->rec_warm = 1;
    return vt__step(m, a, sums);
}

int vt_model_train_step(vt_model *m, const int32_t *labels, const vt_step_args *a,
                        vt_xent_sums *sums)
{
    int rc = vt_tensor_upload(m->labels, labels);
    return rc < 0 ? rc : vt__step_recorded(m, a, sums);
}

long vt_model_replays(const vt_model *m) { return m->replays; }

int vt_model_evaluate(vt_model *m, const int32_t *labels, float *probs, float *logits,
                      vt_xent_sums *sums)
{
    int rc;
    if (labels)
        rc = vt_tensor_upload(m->labels, labels);
    else
        rc = vt_tensor_zero(m->labels);
    if (rc < 0 || (rc = vt__forward(m, NULL)) < 0 ||
        (rc = vt_op_softmax_xent(m->be, m->d[m->ndense - 1].out, m->labels, NULL, 0.0f,
                                 probs ? m->probs : NULL, labels ? sums : NULL)) < 0)
        return rc;
    if (probs && (rc = vt_tensor_download(m->probs, probs)) < 0)
        return rc;
    if (logits && (rc = vt_tensor_download(m->d[m->ndense - 1].out, logits)) < 0)
        return rc;
    return 0;
}

int vt_model_download(vt_model *m, vt_params *p)
{
    int rc = 0;
    for (int k = 0; k < m->ntconv && rc == 0; k++) {
        rc = vt_tensor_download(m->tc[k].w, p->conv_w[m->tc[k].conv]);
        if (rc == 0)
            rc = vt_tensor_download(m->tc[k].b, p->conv_b[m->tc[k].conv]);
    }
    for (int j = 0; j < m->ndense && rc == 0; j++) {
        rc = vt_tensor_download(m->d[j].w, p->dense_w[j]);
        if (rc == 0)
            rc = vt_tensor_download(m->d[j].b, p->dense_b[j]);
    }
    return rc;
}

int vt_model_nparams(const vt_model *m) { return m->nparams; }
const char *vt_model_param_name(const vt_model *m, int i) { return m->names[i]; }
vt_tensor *vt_model_param(vt_model *m, int i) { return m->param[i]; }
vt_tensor *vt_model_velocity(vt_model *m, int i) { return m->velocity[i]; }
