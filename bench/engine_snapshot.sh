# Sourced by the bench scripts: snapshot_engine DIR copies the built engine (build/.libs/starmoe
# and build/.libs/libstarmoe.so*) into DIR and sets the array SM to the command that runs that
# copy, so that a `make` in build/ during a long benchmark cannot swap the engine mid-run.
# STARMOE=/path/to/starmoe skips the copy and runs that binary instead. Sets ENGINE_DESC.
snapshot_engine() {
    local dir=$1 root=${2:-$ROOT} i
    if [ -n "${STARMOE:-}" ]; then
        SM=("$STARMOE")
        ENGINE_DESC="$STARMOE"
        return 0
    fi
    # a rebuild in progress removes the program for a moment: wait up to 2 minutes
    for ((i = 0; i < 24; i++)); do
        [ -x "$root/build/.libs/starmoe" ] && [ -e "$root/build/.libs/libstarmoe.so.0" ] && break
        sleep 5
    done
    if [ ! -x "$root/build/.libs/starmoe" ]; then
        echo "no engine at $root/build/.libs/starmoe: build it first (cd build && make -s)" >&2
        return 2
    fi
    mkdir -p "$dir"
    cp -P "$root"/build/.libs/libstarmoe.so* "$root/build/.libs/starmoe" "$dir/"
    SM=(env "LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$dir/starmoe")
    "${SM[@]}" bench --help >/dev/null 2>&1 || {
        echo "the engine snapshot in $dir does not run (a rebuild in progress?)" >&2
        return 2
    }
    ENGINE_DESC="snapshot of $root/build taken $(date -u +%FT%TZ) (libstarmoe.so $(date -u -r "$root/build/.libs/libstarmoe.so.0" +%FT%TZ))"
}
