#!/bin/sh
# The baseline: what a careful admin writes by hand to deploy a directory to N servers.
#
#   baseline.sh SSH_CONFIG SRC_DIR RELEASES WEBROOT RELEASE_ID PREV_ID PARALLEL HOST...
#
# Per host, PARALLEL hosts at once (xargs -P), two SSH connections:
#   1. rsync -a --delete --link-dest=RELEASES/PREV_ID SRC_DIR/ HOST:RELEASES/RELEASE_ID/
#      (unchanged files become hard links to the previous release; --mkpath creates
#      RELEASES on a fresh host; no --link-dest when PREV_ID is empty)
#   2. ssh HOST 'ln -sfn RELEASE tmp && mv -T tmp WEBROOT'  (an atomic switch)
# Exits non-zero if any host failed. No hooks, no pruning, no logging, no records.
set -eu

if [ "${1:-}" = "--one" ]; then
    host=$2
    link_dest=""
    if [ -n "$PREV_ID" ]; then link_dest="--link-dest=$RELEASES/$PREV_ID"; fi
    # shellcheck disable=SC2086 # $link_dest is one word or none
    rsync -a --delete --mkpath --timeout=600 $link_dest -e "ssh -F $SSH_CONFIG" \
        "$SRC_DIR/" "$host:$RELEASES/$RELEASE_ID/"
    tmp="$WEBROOT.tmp-$RELEASE_ID"
    ssh -F "$SSH_CONFIG" "$host" \
        "ln -sfn '$RELEASES/$RELEASE_ID' '$tmp' && mv -T '$tmp' '$WEBROOT'"
    exit 0
fi

if [ $# -lt 8 ]; then
    echo "usage: $0 SSH_CONFIG SRC_DIR RELEASES WEBROOT RELEASE_ID PREV_ID PARALLEL HOST..." >&2
    exit 2
fi
SSH_CONFIG=$1 SRC_DIR=$2 RELEASES=$3 WEBROOT=$4 RELEASE_ID=$5 PREV_ID=$6 PARALLEL=$7
export SSH_CONFIG SRC_DIR RELEASES WEBROOT RELEASE_ID PREV_ID
shift 7
printf '%s\n' "$@" | xargs -P "$PARALLEL" -n 1 sh "$0" --one
