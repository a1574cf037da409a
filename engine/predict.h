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
#include "writer.h"

typedef struct vt_predictor vt_predictor;

#define VT_PREDICT_TOP_MAX 64 /* classes a prediction lists at most */

/* Loads a model file written by a job onto be, reading it as creds (NULL:
 * as the process).  VT_EFORMAT for files that are not vggtune models. */
int vt_predictor_load(vt_predictor **out, vt_backend *be, const char *model_path,
                      const vt_creds *creds);

/* Who wrote the model (vt_writer_of); valid while p is. */
const vt_writer *vt_predictor_writer(const vt_predictor *p);

/* Number of classes, and class c's name. */
int vt_predictor_nclasses(const vt_predictor *p);
const char *vt_predictor_class(const vt_predictor *p, int c);

/* Classifies n image files: probs (n x C, host) receives the softmax and
 * logits (n x C, optional) the logits.  An unreadable image is an error that
 * names it; with errors (n pointers, NULL on entry) it is not: errors[i]
 * receives the reason (malloc'd; the caller frees) and image i's rows are
 * NaN, and the other images are classified. */
int vt_predictor_run(vt_predictor *p, const char *const *paths, int n, float *probs,
                     float *logits, const vt_creds *creds, char **errors);

typedef struct {
    int nclasses;
    int n;             /* images evaluated */
    int skipped;       /* unreadable images */
    int links;         /* symbolic links in the folder, not followed */
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

/* An evaluation as JSON: {"n", "skipped", "links_skipped", "accuracy",
 * "loss", "classes": [...], "precision": [...], "recall": [...] (null where
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
