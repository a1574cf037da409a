/* writer.h - who wrote a model file, and whether an output directory holds
 * a finished job's model.
 *
 * A job records itself in the metadata of model.safetensors ("job_id", and
 * "job_store": the daemon's job store the number belongs to) and again in
 * classmap.json, which it writes last, when it has finished.  The daemon's
 * predict, eval and init_job use the first to refuse a model that another
 * writer put in a job's directory; the trainer and the client use both to
 * refuse, without overwrite, a directory holding a finished job's model.
 * Pure file reading: the client links it too.
 */
#ifndef VT_WRITER_H
#define VT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "tensorset.h"

#define VT_WRITER_STORE_MAX 33 /* a job store's id, NUL included, at most */
#define VT_CLASSMAP_MAX (16u << 20) /* bytes of a classmap.json that are read, at most */

/* Who wrote a model file: the daemon's job number, 0 for `vggtuned run`,
 * -1 when the file does not say (an older version wrote it); and the id of
 * the job store the number belongs to (numbers start again in a new store),
 * "" for `vggtuned run` and files written before stores had ids. */
typedef struct {
    int64_t job;
    char store[VT_WRITER_STORE_MAX];
} vt_writer;

/* The writer recorded in the metadata of set. */
vt_writer vt_writer_of(const vt_tensorset *set);

/* Whether w is job `job` of the store `store` (NULL or "" for none).  A
 * record without a store is judged by its number alone. */
int vt_writer_is(const vt_writer *w, int64_t job, const char *store);

/* w for a message, relative to the store `store` (NULL: not known):
 * "vggtuned run", "job 12", or "job 12 of another job store" (another
 * vggtuned's, or an earlier state folder's). */
void vt_writer_name(const vt_writer *w, const char *store, char *buf, size_t len);

/* Whether the directory dir holds the model of a job that finished:
 * dir/model.safetensors records its writer, and dir/classmap.json names
 * the same one (a classmap.json without a writer, from an older version,
 * counts as finished).  1 with *w filled; 0 when there is no model, it is
 * not one of ours or its job did not finish (a cancelled keep_best job
 * leaves one without classmap.json); an error when the model cannot be
 * read.  Reads as the calling thread's identity. */
int vt_output_finished_model(const char *dir, vt_writer *w);

/* The folder of an output directory where a finished model that a new job
 * replaces waits until that job ends (put back if it does not succeed). */
#define VT_OUTPUT_ASIDE ".vggtune-replaced"

/* The finished model a new job in dir would replace: as
 * vt_output_finished_model of dir, and when dir holds none, of
 * dir/VT_OUTPUT_ASIDE; *aside (may be NULL) says it was the one waiting
 * there. */
int vt_output_protected_model(const char *dir, vt_writer *w, int *aside);

#endif
