/* Example: load a Hugging Face DeepSeek-V3 folder with the public API, run one forward and
 * backward step on a few tokens as a StarPU task graph, and print the loss, the task count and
 * the largest gradient of each kind of parameter.
 *   usage: forward_backward MODEL_DIR [WORKERS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/starmoe.h>

static double max_abs(const float *v, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double a = v[i] < 0 ? -v[i] : v[i];
        if (a > m) m = a;
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [WORKERS]\n", argv[0]);
        return 2;
    }
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = argc > 2 ? atoi(argv[2]) : 0};
    if (sm_engine_init(&e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    sm_model *m = sm_model_open_hf(argv[1], &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        sm_engine_shutdown();
        return 1;
    }
    enum { B = 2, S = 16 };
    int32_t ids[B * S], targets[B * S];
    int V = sm_model_config(m)->vocab_size;
    for (int i = 0; i < B * S; i++) {
        ids[i] = (i * 7 + 3) % V;
        targets[i] = (i * 7 + 10) % V;
    }
    sm_run *r = sm_run_new(m, B, S, 2, 1, &err);
    double loss;
    int rc = !r || sm_run_step(r, ids, targets, &loss, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
    } else {
        printf("loss %.6f over %d tokens, %zu tasks in the step\n", loss, B * S, sm_run_ntasks(r));
        for (int i = 0; i < sm_model_nparams(m); i++) {
            const char *name = sm_model_param_name(m, i);
            const float *g = sm_model_param_grad(m, i);
            int64_t shape[4];
            int nd = sm_model_param_shape(m, i, shape);
            size_t n = 1;
            for (int k = 0; k < nd; k++) n *= (size_t)shape[k];
            if (g && (strstr(name, "layers.") == NULL || strstr(name, "layers.1.") != NULL))
                printf("  max |grad| %.3e  %s\n", max_abs(g, n), name);
        }
    }
    sm_run_free(r);
    sm_model_free(m);
    sm_engine_shutdown();
    return rc;
}
