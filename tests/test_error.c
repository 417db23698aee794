/* Tests of base/error.c and base/aprintf.c: a message longer than sm_error's slot keeps its start
 * (the file) and its end (the cause) around " ... "; an error message may quote the previous one;
 * a path too long for its buffer is refused with its length, never cut. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/aprintf.h"
#include "tests/tap.h"

static void test_long_message_keeps_its_cause(void)
{
    sm_error err;
    char *dir = malloc(3001);
    memset(dir, 'd', 3000);
    dir[0] = '/';
    dir[3000] = '\0';
    sm_fail(&err, "%s/model.safetensors: cannot open: a symbolic link loop", dir);
    size_t n = strlen(err.msg);
    tap_ok(n == sizeof err.msg - 1, "the message fills the slot (%zu bytes)", n);
    tap_ok(strncmp(err.msg, "/ddd", 4) == 0, "its start survives: %.20s", err.msg);
    tap_ok(strstr(err.msg, "d ... d") != NULL, "the middle is elided with ' ... '");
    const char *cause = "dd/model.safetensors: cannot open: a symbolic link loop";
    size_t c = strlen(cause);
    tap_ok(n > c && strcmp(err.msg + n - c, cause) == 0, "its end, the cause, survives: %s",
           err.msg + n - c);
    sm_fail(&err, "short: %d", 7);
    tap_ok(strcmp(err.msg, "short: 7") == 0, "a message that fits is copied whole");
    sm_fail(&err, "--data: %s", err.msg);
    tap_ok(strcmp(err.msg, "--data: short: 7") == 0, "a message may quote the previous one: %s",
           err.msg);
    free(dir);
}

static void test_paths_refused_not_cut(void)
{
    sm_error err = {{0}};
    char buf[16];
    tap_ok(sm_format_path(buf, sizeof buf, &err, "%s/%s", "runs", "a.json") == 0 &&
               strcmp(buf, "runs/a.json") == 0,
           "a path that fits is formatted");
    tap_ok(sm_format_path(buf, sizeof buf, &err, "%s/%s", "runs/long-name", "tokenizer.bpe") ==
                   -1 &&
               strcmp(err.msg, "path too long (28 bytes, at most 15): runs/long-name/"
                               "tokenizer.bpe") == 0 &&
               buf[0] == '\0',
           "a path that does not fit is refused, whole in the message: %s", err.msg);
    char *s = sm_aprintf("%s-%d", "x", 42);
    tap_ok(s && strcmp(s, "x-42") == 0, "sm_aprintf formats into exact-size memory");
    free(s);
}

int main(void)
{
    test_long_message_keeps_its_cause();
    test_paths_refused_not_cut();
    return tap_done();
}
