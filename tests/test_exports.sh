#!/usr/bin/env bash
# The shared library exports exactly the public API: every function declared in
# include/starmoe/*.h and nothing else. starmoe.h includes every public header, the CLI imports
# its starmoe functions from the shared library, and the CLI and the example include no
# internal header.
. "$(dirname "$0")/tap.sh"
SRC=${STARMOE_SRCDIR:-..}
LIB=.libs/libstarmoe.so
words() { echo $*; }

# the functions the public headers declare, as the compiler sees them
for h in "$SRC"/include/starmoe/*.h; do echo "#include <starmoe/${h##*/}>"; done > "$TMP/all.c"
${CC:-cc} -fsyntax-only -I"$SRC/include" -aux-info "$TMP/aux" "$TMP/all.c"
ok $? "the public headers compile with include/ alone on the include path"
grep -F '/include/starmoe/' "$TMP/aux" | sed -n 's/^[^(]*[ *]\(sm_[a-z0-9_]*\) (.*/\1/p' |
  LC_ALL=C sort -u > "$TMP/declared"
[ "$(wc -l < "$TMP/declared")" -ge 50 ]
ok $? "found the public functions ($(wc -l < "$TMP/declared") declared)"

nm -D --defined-only "$LIB" | awk '{print $NF}' | LC_ALL=C sort -u > "$TMP/exported"
internal=$(LC_ALL=C comm -13 "$TMP/declared" "$TMP/exported")
[ -z "$internal" ]
ok $? "nothing but the public API is exported${internal:+: $(words $internal)}"
missing=$(LC_ALL=C comm -23 "$TMP/declared" "$TMP/exported")
[ -z "$missing" ]
ok $? "every public function is exported${missing:+; missing: $(words $missing)}"

unlisted=$(for h in "$SRC"/include/starmoe/*.h; do
  grep -q "^#include <starmoe/${h##*/}>" "$SRC/include/starmoe/starmoe.h" || echo "${h##*/}"
done | grep -vx starmoe.h)
[ -z "$unlisted" ]
ok $? "starmoe.h includes every public header${unlisted:+; not $(words $unlisted)}"

# the CLI links the shared library: its starmoe functions are imports, all of them public
nm -D --undefined-only .libs/starmoe | awk '{print $NF}' | grep '^sm_' |
  LC_ALL=C sort -u > "$TMP/imported"
other=$(LC_ALL=C comm -23 "$TMP/imported" "$TMP/declared")
[ -s "$TMP/imported" ] && [ -z "$other" ]
ok $? "the CLI imports $(wc -l < "$TMP/imported") public functions from libstarmoe.so${other:+,\
 and $(words $other)}"

inc=$(grep -n '#include "' "$SRC"/cli/*.[ch] "$SRC/examples/forward_backward.c" |
  grep -v '"cli/cli.h"')
[ -z "$inc" ]
ok $? "the CLI and the example include no internal header${inc:+: $(words $inc)}"
tap_done
