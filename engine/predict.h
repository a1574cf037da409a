/* predict.h - using a finished job's model: prediction and evaluation.
 *
 * A model file (OUT/model.safetensors) holds every weight and the metadata
 * needed to rebuild the network (classes, image size, preprocessing, head),
 * so a predictor needs nothing else.  It loads all 13 convolutions as its own
 * frozen trunk and runs the head on the pool5 features.
 */
#ifndef VT_PREDICT_H
#define VT_PREDICT_H

#include "../common/creds.h"
#include "../common/pool.h"
#include "../kernels/backend.h"
#include "dataset.h"
#include "writer.h"

typedef struct vt_predictor vt_predictor;

#define VT_PREDICT_TOP_MAX 64 /* classes a prediction lists at most */

/* Reads a model file written by a job, as creds (NULL: as the process):
 * the weights and what rebuilds the network, on the host only, so that
 * it can run on a thread other than the device's.  VT_EFORMAT for files
 * that are not vggtune models. */
int vt_predictor_read(vt_predictor **out, const char *model_path, const vt_creds *creds);

/* Builds the network of a predictor vt_predictor_read made on be (its
 * own frozen trunk of all 13 convolutions, and the head), computing in
 * the precision the job trained in (its "job" metadata; bf16 where the
 * backend has it unless the job chose fp32), as its validation did. */
int vt_predictor_upload(vt_predictor *p, vt_backend *be);

/* Device bytes vt_predictor_upload and a pass of p on be are estimated to
 * take, for admission (as a job's estimate is). */
size_t vt_predictor_estimate(const vt_predictor *p, vt_backend *be);

/* vt_predictor_read, then vt_predictor_upload. */
int vt_predictor_load(vt_predictor **out, vt_backend *be, const char *model_path,
                      const vt_creds *creds);

/* Who wrote the model (vt_writer_of); valid while p is. */
const vt_writer *vt_predictor_writer(const vt_predictor *p);

/* Number of classes, and class c's name. */
int vt_predictor_nclasses(const vt_predictor *p);
const char *vt_predictor_class(const vt_predictor *p, int c);

/* Classifies n image files, decoding on pool as creds (NULL: as the
 * process): probs (n x C, host) receives the softmax and logits (n x C,
 * optional) the logits.  An image that cannot be read is no error:
 * errors[i] (n pointers, NULL on entry) receives the reason (malloc'd; the
 * caller frees) and image i's rows are NaN. */
int vt_predictor_run(vt_predictor *p, vt_pool *pool, const char *const *paths, int n,
                     float *probs, float *logits, const vt_creds *creds, char **errors);

typedef struct {
    int nclasses;
    int n;             /* images evaluated */
    int skipped;       /* unreadable images */
    int links;         /* symbolic links in the folder, not followed */
    int others;        /* files in it skipped as not images by their names */
    char first_skipped[512]; /* the first unreadable image and why ("PATH: why"), or "" */
    double loss;       /* mean cross-entropy */
    double accuracy;
    int *confusion;    /* (nclasses, nclasses): [true][predicted], owned */
    double *precision; /* (nclasses), owned; NaN where nothing was predicted */
    double *recall;    /* (nclasses), owned; NaN where the class has no image */
} vt_eval_result;

/* Evaluates the model on a flow_from_directory tree whose class folders are
 * the model's classes (a folder the model does not know is an error).
 * Decoding runs on pool. */
int vt_predictor_eval(vt_predictor *p, vt_pool *pool, const char *dir,
                      const vt_creds *creds, vt_eval_result *res);

/* ---- a pass, one batch at a time ----------------------------------------
 * What vt_predictor_run and vt_predictor_eval do, in steps of one batch,
 * for a caller that shares the device and interleaves other work. */

typedef struct vt_pass vt_pass;

typedef enum {
    VT_PASS_PREDICT, /* keep every image's rows */
    VT_PASS_EVAL     /* count them: an evaluation (labels = class folders) */
} vt_pass_kind;

/* Begins a pass of p (uploaded) over ds, decoding on pool as creds (NULL:
 * as the process), the first batches at once; p, ds and pool must outlive
 * the pass.  VT_PASS_EVAL maps ds's classes onto the model's by name: a
 * folder the model does not know is VT_EINVAL.  decoded (may be NULL) is
 * called with ud on a pool thread whenever a batch's images are done, for
 * a caller that polls vt_pass_ready. */
int vt_pass_begin(vt_pass **out, vt_predictor *p, vt_pool *pool, const vt_dataset *ds,
                  vt_pass_kind kind, const vt_creds *creds, void (*decoded)(void *ud),
                  void *ud);

/* Whether vt_pass_step would run without waiting for images to decode (a
 * read stuck on a dead mount need not hold up the caller's other work). */
int vt_pass_ready(vt_pass *ps);

/* Runs the next batch: 1 when more remain, 0 when the pass is over (its
 * results are then final), or an error (the pass can only be freed). */
int vt_pass_step(vt_pass *ps);

/* Images gone through so far (read or not), of *total. */
int vt_pass_done(const vt_pass *ps, int *total);

/* VT_PASS_PREDICT, once over: image i's softmax and logits (C floats
 * each), or NULL with *why (valid while ps is) saying why it could not be
 * read. */
const float *vt_pass_row(const vt_pass *ps, int i, const float **logits, const char **why);

/* VT_PASS_EVAL, once over: moves the evaluation into *res.  (A pass in
 * which no image could be read ends in an error instead: VT_EINVAL.) */
void vt_pass_eval(vt_pass *ps, vt_eval_result *res);

/* Frees a pass (waiting for what the device may still write into it);
 * NULL is a no-op. */
void vt_pass_free(vt_pass *ps);

/* An evaluation as JSON: {"n", "skipped", "links_skipped", "others_skipped",
 * "first_skipped" (only when an image was unreadable), "accuracy", "loss",
 * "classes": [...], "precision": [...], "recall": [...] (null where
 * undefined), "confusion": [[...], ...]}; NULL when out of memory. */
struct cJSON *vt_eval_json(const vt_predictor *p, const vt_eval_result *r);

/* Frees the arrays of an evaluation result. */
void vt_eval_result_free(vt_eval_result *res);

/* One image's prediction as a JSON object: {"image", "top": [{"class",
 * "index", "probability"}, ...k of them], "probabilities": [...]} plus
 * "logits" when logits (C floats) is given; with error (the image could
 * not be read), {"image", "error"}.  NULL when out of memory. */
struct cJSON *vt_predict_json(const vt_predictor *p, const char *image, const float *probs,
                              const float *logits, int k, const char *error);

/* Indices of the k largest of p[0..n), largest first (ties: lower index). */
void vt_predict_topk(const float *p, int n, int k, int *out);

/* Frees a predictor; NULL is a no-op. */
void vt_predictor_free(vt_predictor *p);

#endif
