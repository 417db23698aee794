# Headless Chromium for the HTML report tests (sourced after tap.sh): chromium_cmd runs it on
# a page with a fresh profile, bounded by a timeout; page_ok says whether a report page drew its
# lanes and task boxes without a script error (its <body> goes to $TMP/body).
chromium_cmd() { # output flags..., page
  local profile; profile=$(mktemp -d "$TMP/chromium.XXXXXX")
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1400,900 "$@" 2> /dev/null
}
# a page passes when its script drew lanes and boxes and reported no error
page_ok() { # page
  local body; body=$(chromium_cmd --dump-dom "file://$(realpath "$1")" | grep -o '<body[^>]*>')
  echo "$body" > "$TMP/body"
  echo "$body" | grep -qE 'data-lanes="[1-9]' && echo "$body" | grep -qE 'data-boxes="[1-9]' &&
    ! echo "$body" | grep -q 'data-error='
}
