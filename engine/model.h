/* model.h - VGG16 on a compute backend: the shared frozen trunk and a job's
 * trainable part.
 *
 * vt_trunk holds all 13 convolutions on the device, read-only, plus the
 * ping-pong scratch that frozen forward passes use.  One trunk serves every
 * job whose weights file has the same content; only one job computes at a
 * time (the device thread), so they share the scratch too.
 *
 * vt_model is one job's trainable state: copies of the trainable
 * convolutions (block 6-t..5), the head, their gradients and SGD velocities,
 * and the activations the backward pass needs.  Frozen layers run forward
 * only and keep no activations.
 *
 * Data flow for a batch of n <= max_batch images:
 *   vt_model_input(m)     (n, S, S, 3)  preprocessed images   <- trainer
 *   vt_model_extract()    frozen forward: input -> features
 *   vt_model_features(m)  (n, s, s, c)  the cut               <- or a cache
 *   vt_model_train_step() / vt_model_evaluate() from the features
 */
#ifndef VT_MODEL_H
#define VT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "vgg.h"

typedef struct vt_trunk vt_trunk;
typedef struct vt_model vt_model;

/* Uploads the 13 convolutions of p (host, KRSC) to the backend as a frozen
 * trunk.  Its scratch buffers are made on first use, per activation dtype. */
int vt_trunk_create(vt_trunk **out, vt_backend *be, const vt_params *p);

/* Frees the trunk; NULL is a no-op.  No model may still use it. */
void vt_trunk_free(vt_trunk *t);

/* Device bytes held by the trunk's weights and by its scratch. */
size_t vt_trunk_weight_bytes(const vt_trunk *t);
size_t vt_trunk_scratch_bytes(const vt_trunk *t);

/* Releases the trunk's scratch (it is re-made on the next frozen pass). */
void vt_trunk_trim(vt_trunk *t);

typedef struct {
    int trainable_blocks; /* 0..5 */
    int max_batch;        /* > 0 */
    float dropout;        /* rate after each hidden dense layer, [0, 1) */
    vt_dtype act;         /* activation dtype (vt_backend_act_dtype) */
} vt_model_opts;

/* Arguments of one training step. */
typedef struct {
    vt_sgd_args sgd;      /* lr already decayed for this iteration */
    uint64_t seed;        /* job seed: dropout masks are drawn from */
    uint64_t iteration;   /* (seed, VT_RNG_DROPOUT + iteration, layer, i) */
} vt_step_args;

/* Creates a job's model on trunk's backend.  The trainable convolutions
 * start from p's (so a finetune job starts block 5 from the weights file),
 * the head from p's dense layers. */
int vt_model_create(vt_model **out, vt_trunk *trunk, const vt_params *p,
                    const vt_model_opts *opts);

/* Frees the model; NULL is a no-op. */
void vt_model_free(vt_model *m);

/* Sets the batch size (1..max_batch) of the next passes. */
int vt_model_set_batch(vt_model *m, int n);

/* The input (n,S,S,3) and feature (n,s,s,c) tensors at the current batch. */
vt_tensor *vt_model_input(vt_model *m);
vt_tensor *vt_model_features(vt_model *m);


/* Cut shape: side s and channels c of the features. */
void vt_model_cut(const vt_model *m, int *side, int *channels);

/* Frozen forward pass: input -> features (a copy for trainable_blocks 5).
 * A large batch runs its early blocks in chunks of images so that the
 * trunk's scratch stays within VT_FROZEN_CHUNK_MIB (environment, MiB per
 * buffer, default 200; 0 = the whole batch at once), unless one image alone
 * needs more.  The features do not depend on it on the
 * CPU; on CUDA only to rounding (cuDNN may pick other algorithms for other
 * batch sizes). */
int vt_model_extract(vt_model *m);

/* One SGD step on the current features with labels[n] (host): forward,
 * mean softmax cross-entropy, backward, update.  Adds the batch's summed
 * loss and correct count to *sums by the next vt_backend_sync() (see
 * vt_op_softmax_xent): the step itself does not wait for the device. */
int vt_model_train_step(vt_model *m, const int32_t *labels, const vt_step_args *a,
                        vt_xent_sums *sums);

/* Training steps that ran as replays of a recorded sequence (CUDA graphs,
 * VT_CUDA_GRAPHS=1): each step at max_batch after the second, where the
 * backend records. */
long vt_model_replays(const vt_model *m);

/* Forward pass without dropout.  labels may be NULL (prediction only: sums
 * is then untouched and may be NULL); probs (host, n x C, optional) receives
 * the softmax, logits (host, n x C, optional) the logits.  *sums, like the
 * training step's, is complete after the next vt_backend_sync(). */
int vt_model_evaluate(vt_model *m, const int32_t *labels, float *probs, float *logits,
                      vt_xent_sums *sums);

/* Copies the trainable convolutions and the head back into p (host). */
int vt_model_download(vt_model *m, vt_params *p);

/* The trainable tensors, for checkpoints: count, and for i < count the
 * tensor's name ("features.24.weight", "head.0.bias"; internal layouts), its
 * weights and its SGD velocity. */
int vt_model_nparams(const vt_model *m);
const char *vt_model_param_name(const vt_model *m, int i);
vt_tensor *vt_model_param(vt_model *m, int i);
vt_tensor *vt_model_velocity(vt_model *m, int i);

/* Estimated device bytes of a model with these options (before creating it),
 * and of the trunk scratch it needs, for admission control. */
size_t vt_model_estimate(const vt_params *p, const vt_model_opts *opts, size_t act_size,
                         size_t *scratch_bytes);

#endif
