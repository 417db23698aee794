#!/usr/bin/env bash
# The house plan is the rule: every #include of a repository header must be an edge that the
# table "Which folder may include which" of docs/architecture.md allows (read from the page
# itself), a public header counting as the folder whose local.mk installs it. The table must
# keep the plan's promises (base/ uses nothing else; io/, data/, trace/ and base/ never use
# model/; the CLI and the examples only the public API), and a tree with two bad includes shows
# that the check catches them.
. "$(dirname "$0")/tap.sh"
src=$(cd "${STARMOE_SRCDIR:-..}" && pwd -P)

# "folder allowed..." per row of the table in ROOT/docs/architecture.md.
read_table() {
    awk '/^## / { on = ($0 == "## Which folder may include which") }
         on && /^\| `/ { n = split($0, c, "|"); f = c[2]; a = c[n - 1]
                         gsub(/[` ]/, "", f); gsub(/[`,]/, " ", a); print f, a }' \
        "$1/docs/architecture.md"
}

# "include/starmoe/x.h folder/" for every public header a folder's local.mk installs.
read_owners() {
    local mk
    for mk in "$1"/*/local.mk; do
        sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$mk" |
            grep -E '^[[:space:]]*starmoeinclude_HEADERS[[:space:]]*\+?=' |
            grep -oE 'include/starmoe/[A-Za-z0-9_.-]+\.h' |
            sed "s|\$| $(basename "$(dirname "$mk")")/|"
    done
}

# Source files of ROOT, relative to it: git's list in a checkout (untracked ones included,
# ignored ones not), else every C file under the table's folders.
list_sources() {
    local root=$1; shift
    if [ "$(git -C "$root" rev-parse --show-toplevel 2>/dev/null)" = "$root" ]; then
        git -C "$root" ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.cu'
    else
        (cd "$root" && find "$@" \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) 2>/dev/null)
    fi
}

# The folder a repository path belongs to: "include/starmoe/" or its first component + "/".
folder_of() {
    case $1 in
    include/starmoe/*) echo include/starmoe/ ;;
    */*) echo "${1%%/*}/" ;;
    *) echo . ;;
    esac
}

# Prints one line per include of a repository header in ROOT:
#   "ok|bad SRC-FOLDER FILE:LINE INCLUDED TARGET-FOLDER"
# and "unplaced FOLDER FILE" for a source file whose folder has no row.
check_tree() {
    local root=$1 line file no inc t node row
    declare -A allow=() owner=()
    while read -r f rest; do allow[$f]=" $rest "; done < <(read_table "$root")
    while read -r h o; do owner[$h]=$o; done < <(read_owners "$root")
    while read -r file; do
        local from
        from=$(folder_of "$file")
        [ "$from" = . ] && continue
        row=${allow[$from]-}
        [ -n "$row" ] || { echo "unplaced $from $file"; continue; }
        while IFS=: read -r no line; do
            inc=$(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/p' \
                  <<<"$line")
            t=
            case $line in
            *'<starmoe/'* | *'"starmoe/'*) t=include/$inc ;;
            *'<'*) continue ;;
            *)
                if [ -f "$root/$(dirname "$file")/$inc" ]; then
                    t=$(realpath -m --relative-to="$root" "$root/$(dirname "$file")/$inc")
                elif [ -f "$root/$inc" ]; then t=$inc
                elif [ -f "$root/include/$inc" ]; then t=include/$inc
                fi ;;
            esac
            [ -n "$t" ] && [ -f "$root/$t" ] || continue
            node=$(folder_of "$t")
            [ "$node" = . ] && continue
            if [ "$node" = include/starmoe/ ]; then
                case $row in
                *" include/starmoe/ "* | *" ${owner[$t]:-none}/ "*) ;;
                *) node=${owner[$t]:-no-owner:$t} ;;
                esac
            fi
            case $node in
            include/starmoe/) echo "ok $from $file:$no $inc $node" ;;
            *) case $row in
               *" $node "*) echo "ok $from $file:$no $inc $node" ;;
               *) echo "bad $from $file:$no $inc $node" ;;
               esac ;;
            esac
        done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$root/$file")
    done < <(list_sources "$root" $(read_table "$root" | awk '{print $1}'))
}

# ---- the table itself ----
table=$(read_table "$src")
nrows=$(grep -c . <<<"$table")
folders=$(awk '{printf "%s ", $1}' <<<"$table")
need="base/ graph/ tasks/ model/ schedulers/ io/ data/ trace/ cli/ include/starmoe/ examples/ tests/"
missing=$(for f in $need; do grep -q "^$f " <<<"$table" || echo "$f"; done)
[ -z "$missing" ]; ok $? "docs/architecture.md's table has a row per folder ($nrows: $folders)"
[ -z "$missing" ] || echo "# no row for: $missing"

row() { awk -v f="$1" '$1 == f { $1 = ""; print substr($0, 2) }' <<<"$table"; }
rules=0
[ "$(row base/)" = "base/" ] || { echo "# base/ may include more than base/: $(row base/)"; rules=1; }
for f in base/ io/ data/ trace/; do
    case " $(row "$f") " in
    *" model/ "* | *" include/starmoe/ "*)
        echo "# $f may include model/ (or every public header): $(row "$f")"; rules=1 ;;
    esac
done
for f in cli/ examples/; do
    for a in $(row "$f"); do
        case $a in include/starmoe/ | "$f") ;; *) echo "# $f may include $a"; rules=1 ;; esac
    done
done
ok $rules "the table keeps the plan's rules (base/ alone; no model/ below it; CLI and examples public)"

owners=$(read_owners "$src")
orphans=$(cd "$src" && for h in include/starmoe/*.h; do
    [ "$(grep -c "^$h " <<<"$owners")" -eq 1 ] || echo "$h"; done)
[ -z "$orphans" ]; ok $? "every public header is installed by one folder ($(awk '{printf "%s: %s  ", \
    substr($1, 17), $2}' <<<"$owners"))"
[ -z "$orphans" ] || echo "# installed by no folder or by several: $orphans"

# ---- the sources ----
edges=$(check_tree "$src")
unplaced=$(grep '^unplaced ' <<<"$edges")
[ -z "$unplaced" ]; ok $? "every folder holding sources has a row"
[ -z "$unplaced" ] || sed 's/^/# /' <<<"$unplaced"

for f in $folders; do
    n=$(grep -c "^[a-z]* $f " <<<"$edges")
    bad=$(grep "^bad $f " <<<"$edges")
    [ -z "$bad" ]; ok $? "$f: $n includes of repository headers, all allowed"
    [ -z "$bad" ] || awk '{ printf "# %s includes %s (%s): not allowed for %s\n", $3, $4, $5, $2 }' \
        <<<"$bad"
done

# ---- the check can fail ----
fake=$TMP/tree
mkdir -p "$fake"/{docs,base,io,model,include/starmoe}
cp "$src/docs/architecture.md" "$fake/docs/"
echo 'starmoeinclude_HEADERS += include/starmoe/model.h' > "$fake/model/local.mk"
echo 'starmoeinclude_HEADERS += include/starmoe/error.h' > "$fake/base/local.mk"
touch "$fake"/model/model.h "$fake"/include/starmoe/{model,error}.h
printf '#include <starmoe/error.h>\n#include "model/model.h"\n' > "$fake/base/bad.c"
printf '#include <stdio.h>\n#include "base/bad.h"\n#include <starmoe/model.h>\n' > "$fake/io/bad.c"
touch "$fake/base/bad.h"
found=$(check_tree "$fake" | grep '^bad ' | awk '{print $3, $5}' | sort | tr '\n' ';')
[ "$found" = "base/bad.c:2 model/;io/bad.c:3 model/;" ]
ok $? "a tree where base/ includes model/model.h and io/ <starmoe/model.h> fails ($found)"

tap_done
