/* The export macro of the public API: libstarmoe is compiled with -fvisibility=hidden, so the
 * shared library exports exactly the functions declared with SM_API in include/starmoe. */
#ifndef STARMOE_EXPORT_H
#define STARMOE_EXPORT_H

#define SM_API __attribute__((visibility("default")))

#endif
