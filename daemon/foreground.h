/* foreground.h - vggtuned's one-shot commands, run without the daemon:
 *   vggtuned run JOB.json             train one job in the foreground
 *   vggtuned predict MODEL IMAGE...   classify images with a model file
 *   vggtuned eval MODEL DIR           accuracy, per-class precision/recall,
 *                                     confusion matrix on a labelled folder
 * Each takes its own arguments (argv[0] is the command name) and returns the
 * process exit status.
 */
#ifndef VT_FOREGROUND_H
#define VT_FOREGROUND_H

int vt_fg_run(int argc, char **argv);
int vt_fg_predict(int argc, char **argv);
int vt_fg_eval(int argc, char **argv);

#endif
