#!/usr/bin/env bash
# The installed library works through pkg-config: `make install` into a temporary folder
# (DESTDIR), then examples/forward_backward.c builds with `cc ... $(pkg-config --cflags --libs
# starmoe)` alone against the installed headers and shared library, and runs on the fixture
# passing tests/test_example.sh's checks.
. "$(dirname "$0")/tap.sh"
SRC=${STARMOE_SRCDIR:-..}
DEST=$TMP/dest
# ok for a command's exit status, its output shown (in the log, not as TAP) when it failed
ok_log() { [ "$1" -eq 0 ] || sed 's/^/# /' "$3" >&2; ok "$1" "$2"; }

timeout 300 env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL ${MAKE:-make} -s install DESTDIR="$DEST" \
  > "$TMP/install.log" 2>&1
ok_log $? "make install DESTDIR=$DEST" "$TMP/install.log"
pc=$(find "$DEST" -name starmoe.pc | head -1)
[ -n "$pc" ] && [ -n "$(find "$DEST" -name 'libstarmoe.so*')" ] &&
  [ -n "$(find "$DEST" -name starmoe.h)" ]
ok $? "installs starmoe.pc, libstarmoe.so and the headers"

# the .pc names the configured folders: a copy of it points them into DESTDIR
mkdir -p "$TMP/pc"
sed -E "s#^(prefix|exec_prefix|libdir|includedir)=/#\1=$DEST/#" "$pc" > "$TMP/pc/starmoe.pc"
export PKG_CONFIG_PATH="$TMP/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
libdir=$(pkg-config --variable=libdir starmoe)
flags=$(pkg-config --cflags --libs starmoe)
ok $? "pkg-config --cflags --libs starmoe: ${flags//$DEST/DESTDIR}"
echo "$flags" | grep -q -- "-I$DEST" && echo "$flags" | grep -q -- "-L$DEST"
ok $? "the flags point into the installed tree"

# (a sanitizer build's library needs the program linked with the sanitizer runtimes too)
timeout 120 ${CC:-cc} "$SRC/examples/forward_backward.c" $flags $SAN_LDFLAGS \
  -o "$TMP/forward_backward" > "$TMP/cc.log" 2>&1
ok_log $? "cc examples/forward_backward.c \$(pkg-config --cflags --libs starmoe)" "$TMP/cc.log"

export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$TMP/forward_backward" > "$TMP/ldd.log" 2>&1
grep -q "libstarmoe.so.* => $DEST/.*libstarmoe.so" "$TMP/ldd.log"
ok_log $? "the example loads the installed libstarmoe.so" "$TMP/ldd.log"
EXAMPLE="$TMP/forward_backward" timeout 300 bash "$SRC/tests/test_example.sh" \
  > "$TMP/example.log" 2>&1
ok_log $? "the installed example passes tests/test_example.sh" "$TMP/example.log"
tap_done
