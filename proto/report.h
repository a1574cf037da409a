/* report.h - replies as people read them, where both programs print them:
 * `vggtune eval` from the daemon's reply, `vggtuned eval` from the same
 * document made in the foreground. */
#ifndef VT_REPORT_H
#define VT_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

/* Prints an eval document (PROTOCOL.md, "eval"): images, accuracy and loss
 * with the unreadable images and links skipped, per-class precision and
 * recall ("-" where undefined), and the confusion matrix. */
void vt_report_eval(FILE *f, const cJSON *eval);

#endif
