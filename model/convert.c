/* sm_convert, the public entry of `starmoe convert` (<starmoe/drivers.h>): the conversion
 * itself is a format matter, io/convert.c. */
#include <starmoe/drivers.h>

#include "io/convert.h"

int sm_convert(const char *model_dir, const char *to, const char *out_dir, sm_error *err)
{
    return sm_hf_convert(model_dir, to, out_dir, err);
}
