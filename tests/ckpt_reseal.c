/* ckpt_reseal DIR STEP: rewrites a checkpoint folder's manifest for its files as they are now,
 * so that the shell tests can forge checkpoints whose CRCs match but whose contents disagree. */
#include <stdio.h>
#include <stdlib.h>
#include "tests/testutil.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_reseal DIR STEP\n");
        return 2;
    }
    return tu_ckpt_reseal(argv[1], strtoll(argv[2], NULL, 10)) ? 1 : 0;
}
