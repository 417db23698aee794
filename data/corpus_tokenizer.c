/* Training a tokenizer on a corpus on disk: the corpus's documents read as training reads
 * them, then the tokenizer trained on them (the `tokenizer train` command). */
#include "data/tokenizer.h"

#include "data/dataset.h"

sm_tokenizer *sm_tokenizer_train_corpus(const char *path, const char *doc_sep, int vocab_size,
                                        sm_corpus_stats *stats, sm_error *err)
{
    char **docs;
    size_t *lens, ndocs, skipped = 0, bytes = 0;
    if (sm_corpus_read(path, doc_sep, &docs, &lens, &ndocs, &skipped, err)) return NULL;
    for (size_t i = 0; i < ndocs; i++) bytes += lens[i];
    sm_tokenizer *t = sm_tokenizer_train((const char *const *)docs, lens, ndocs, vocab_size, err);
    sm_corpus_free(docs, lens, ndocs);
    if (t && stats) *stats = (sm_corpus_stats){.docs = ndocs, .bytes = bytes, .skipped = skipped};
    return t;
}
