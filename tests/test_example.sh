#!/usr/bin/env bash
# The public-API example runs on the fixture and prints a finite loss and gradients. EXAMPLE
# names another build of it (tests/test_install.sh: one built against the installed library).
. "$(dirname "$0")/tap.sh"
out=$("${EXAMPLE:-./examples/forward_backward}" "$FIXTURE" 2)
ok $? "examples/forward_backward runs"
echo "$out" | grep -qE '^loss [0-9]+\.[0-9]+ over 32 tokens, [0-9]+ tasks'; ok $? "prints the loss and task count"
echo "$out" | grep -q 'max |grad| .*lm_head.weight'; ok $? "prints gradients"
! echo "$out" | grep -qiE 'nan|inf'; ok $? "no NaN or Inf"
tap_done
