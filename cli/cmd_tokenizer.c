/* starmoe tokenizer train|encode|decode: the byte-level BPE tokenizer on its own. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sm_tok_usage =
    "train [--data PATH] [--vocab N] [--doc-sep LINE] -o FILE\n"
    "       starmoe tokenizer encode --tokenizer FILE --text TEXT\n"
    "       starmoe tokenizer decode --tokenizer FILE IDS...";

static int sm_tok_train(const char *data, const char *sep, int vocab, const char *out)
{
    sm_error err = {{0}};
    sm_corpus_stats st;
    sm_tokenizer *t = sm_tokenizer_train_corpus(data, sep, vocab, &st, &err);
    int rc = !t || sm_tokenizer_save(t, out, &err);
    if (rc) fprintf(stderr, "starmoe tokenizer: %s\n", err.msg);
    else printf("%s: vocabulary %d from %zu documents (%zu bytes, %zu files skipped)\n", out,
                sm_tokenizer_vocab_size(t), st.docs, st.bytes, st.skipped);
    sm_tokenizer_free(t);
    return rc;
}

static int sm_tok_codec(const char *path, const char *text, char **ids_text, int nids)
{
    sm_error err = {{0}};
    sm_tokenizer *t = sm_tokenizer_load(path, &err);
    int rc = 1;
    if (t && text) {
        int32_t *ids;
        size_t n;
        if (sm_tokenizer_encode(t, text, strlen(text), &ids, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
            printf("\n");
            free(ids);
            rc = 0;
        }
    } else if (t) {
        int32_t *ids = calloc(nids ? nids : 1, sizeof *ids);
        long v;
        rc = 0;
        for (int i = 0; i < nids && rc == 0; i++)
            rc = sm_cli_int("ids", ids_text[i], 0, 1L << 30, &v) ? 2 : (ids[i] = (int32_t)v, 0);
        size_t len;
        char *s = rc ? NULL : sm_tokenizer_decode(t, ids, nids, &len, &err);
        if (s) fwrite(s, 1, len, stdout), printf("\n");
        else if (!rc) rc = 1;
        free(s);
        free(ids);
    }
    if (rc == 1) fprintf(stderr, "starmoe tokenizer: %s\n", err.msg);
    sm_tokenizer_free(t);
    return rc;
}

int sm_cmd_tokenizer(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},      {"vocab", required_argument, 0, 'v'},
        {"doc-sep", required_argument, 0, 's'},   {"out", required_argument, 0, 'o'},
        {"tokenizer", required_argument, 0, 't'}, {"text", required_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    const char *data = SM_DEFAULT_CORPUS, *sep = "%", *out = NULL, *tok = NULL, *text = NULL;
    long vocab = 512;
    int opt;
    if (argc < 2) return sm_cli_usage_error("tokenizer", sm_tok_usage);
    const char *sub = argv[1];
    argc--, argv++;
    while ((opt = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': data = optarg; break;
        case 's': sep = optarg; break;
        case 'o': out = optarg; break;
        case 't': tok = optarg; break;
        case 'x': text = optarg; break;
        case 'v': if (sm_cli_int("vocab", optarg, 257, 1 << 22, &vocab)) return 2; break;
        case 'h': printf("usage: starmoe tokenizer %s\n", sm_tok_usage); return 0;
        default: return sm_cli_usage_error("tokenizer", sm_tok_usage);
        }
    }
    if (!strcmp(sub, "train") && out && optind == argc)
        return sm_tok_train(data, *sep ? sep : NULL, (int)vocab, out);
    if (!strcmp(sub, "encode") && tok && text && optind == argc) return sm_tok_codec(tok, text, NULL, 0);
    if (!strcmp(sub, "decode") && tok && !text)
        return sm_tok_codec(tok, NULL, argv + optind, argc - optind);
    return sm_cli_usage_error("tokenizer", sm_tok_usage);
}
