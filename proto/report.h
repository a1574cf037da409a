/* report.h - replies and events as people read them, where both programs
 * print them: `vggtune eval` and `watch` from the daemon's messages,
 * `vggtuned eval` and `run` from the same documents made in the
 * foreground.  Fields that are missing or of another type print as if
 * absent: a restricted view (another user's job) or an older daemon sends
 * fewer. */
#ifndef VT_REPORT_H
#define VT_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Field o[key] when it is a string, else NULL. */
const char *vt_json_str(const cJSON *o, const char *key);

/* Field o[key] into *out when it is a number: 1, else 0. */
int vt_json_num(const cJSON *o, const char *key, double *out);

/* An integer field, def when missing or not below 2^53 in magnitude (as
 * PROTOCOL.md has integers): converting a larger double to long long could
 * be undefined, and counting from there could overflow. */
long long vt_json_int(const cJSON *o, const char *key, long long def);

/* Whether field o[key] is true. */
int vt_json_true(const cJSON *o, const char *key);

/* What a progress report's loss and accuracy are called in its phase: the
 * validation pass reports the validation means ("val_"), others "". */
const char *vt_report_val_prefix(const char *phase);

/* Prints an eval document (PROTOCOL.md, "eval"): images, accuracy and loss
 * with the unreadable images and links skipped, per-class precision and
 * recall ("-" where undefined), and the confusion matrix. */
void vt_report_eval(FILE *f, const cJSON *eval);

/* "1:02:03", "2:05", or "--:--" for an unknown duration. */
void vt_report_duration(double s, char *buf, size_t len);

/* The live progress line of a progress object (PROTOCOL.md, no newline),
 * at most width - 1 columns (0: 80): "epoch 3/10 [###...] 40/120  loss
 * 0.4821  acc 0.8125  812 img/s  ETA 1:05", the phase named unless it is
 * training, without the epoch when it is unknown (0) - as for the
 * progress of predict and eval ("evaluating [###...] 320/1200 images"). */
void vt_report_progress(char *buf, size_t len, const cJSON *progress, int width);

/* One permanent line per finished epoch (no newline) from its metrics
 * object; epochs (0: unknown) is the job's total. */
void vt_report_epoch(char *buf, size_t len, const cJSON *metrics, int epochs);

#endif
