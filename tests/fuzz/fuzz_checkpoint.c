/* fuzz_checkpoint.c - contract: whatever metadata a checkpoint holds, the
 * restore steps of vt_train__load_checkpoint (job document, iteration and
 * early stopping, unreadable samples, history, position, step log) take it
 * or refuse it with a message, without a crash, a leak or undefined
 * behaviour.  The tensors are the safetensors reader's (fuzz_safetensors).
 * Input: one metadata value per line, for the keys of vt__keys in order.
 * The restore functions are static: the file is compiled in here. */
#include "../../engine/train_checkpoint.c"

static const char *const vt__keys[] = {"job", "iteration", "best_val_loss",
                                       "early_stopping", "data", "bad_train", "bad_val",
                                       "history", "position", "step_log"};

static void vt__quiet(void *ud, vt_log_level level, const char *msg) {}

/* A dataset of n samples in 2 classes. */
static vt_dataset *vt__dataset(int n)
{
    static char *classes[] = {"cat", "dog"};
    static char *paths[] = {"cat/1.jpg", "cat/2.jpg", "dog/1.jpg", "dog/2.png"};
    static vt_sample samples[4];
    vt_dataset *ds = calloc(1, sizeof *ds);
    for (int i = 0; i < n; i++)
        samples[i] = (vt_sample){paths[i], i / 2};
    ds->nclasses = 2;
    ds->classes = classes;
    ds->n = n;
    ds->samples = samples;
    return ds;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int64_t stat[8];
    vt_trainer t = {0};
    vt_dataset *train = vt__dataset(4), *val = vt__dataset(2);
    vt_tensorset *set = vt_tensorset_new();
    char *text = malloc(size + 1), *line, *save = NULL;
    size_t k = 0;

    memcpy(text, data, size);
    text[size] = '\0';
    for (line = strtok_r(text, "\n", &save); line && k < sizeof vt__keys / sizeof vt__keys[0];
         line = strtok_r(NULL, "\n", &save))
        vt_tensorset_set_meta(set, vt__keys[k++], line);
    vt_jobspec_defaults(&t.spec);
    t.spec.train_dir = strdup("/data/train");
    t.spec.output = strdup("/data/out");
    t.env.checkpoint = "fuzz.ckpt";
    t.hooks.message = vt__quiet;
    t.train = train;
    t.val = size && data[0] & 1 ? val : NULL;
    t.stat_train = t.stat_val = stat;
    t.bad_train = calloc(4, 1);
    t.bad_val = calloc(2, 1);

    (void)vt__checkpoint_is_ours(&t, set);
    (void)vt__restore_state(&t, set);
    (void)vt__restore_history(&t, set);
    (void)vt__restore_position(&t, set);
    (void)vt__restore_step_log(&t, set);

    free(t.history);
    free(t.steplog);
    free(t.bad_train);
    free(t.bad_val);
    vt_jobspec_free(&t.spec);
    free(train);
    free(val);
    vt_tensorset_free(set);
    free(text);
    return 0;
}
