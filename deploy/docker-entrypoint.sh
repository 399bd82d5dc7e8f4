#!/bin/sh
# Render /etc/zhizao/*.yaml.tmpl with the container's environment (the secrets from .env) into
# /run/zhizao/*.yaml, readable only by this user (0600), then run `zhizao "$@"`.
set -eu
umask 077
for tmpl in /etc/zhizao/*.yaml.tmpl; do
  [ -e "$tmpl" ] || continue
  out="/run/zhizao/$(basename "$tmpl" .tmpl)"
  python -c 'import os, sys; sys.stdout.write(os.path.expandvars(open(sys.argv[1]).read()))' \
    "$tmpl" > "$out"
done
exec zhizao "$@"
