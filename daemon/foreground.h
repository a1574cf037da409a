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

/* vggtuned run: 0 trained, 1 the job failed, 2 usage error, 75 interrupted
 * with the checkpoint written (run again to resume), 130 interrupted
 * without one.  Errors and progress go to stderr. */
int vt_fg_run(int argc, char **argv);

/* vggtuned predict: 0 every image classified, 1 some could not be read
 * (the others still are) or the model failed, 2 usage error. */
int vt_fg_predict(int argc, char **argv);

/* vggtuned eval: 0 evaluated, 1 failed (model or folder), 2 usage error. */
int vt_fg_eval(int argc, char **argv);

#endif
