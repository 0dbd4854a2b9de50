#!/bin/sh
# Renders Redis' ACL file from users.acl.template and the users' password files, before Redis
# starts (the redis pod's init container runs it). Each password file is named after its ACL user
# (tokend, orders-app, ...); each {{USER}} in the template becomes the SHA-256 of that password,
# so the rendered file holds no password. Comments and blank lines are dropped: Redis' ACL file
# format has neither. Fails, naming the user, when a password is missing or empty.
set -eu
template="${ACL_TEMPLATE:-/etc/redis-acl/users.acl.template}"
passwords="${ACL_PASSWORDS_DIR:-/var/run/secrets/redis-users}"
out="${ACL_FILE:-/run/redis/users.acl}"
umask 077
tmp="$out.tmp"
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$template" > "$tmp"
for file in "$passwords"/*; do
  [ -f "$file" ] || continue
  user="$(basename "$file")"
  # $(...) drops trailing newlines, as tokend trims its passwordFile.
  password="$(cat "$file")"
  if [ -z "$password" ]; then
    echo "render-acl: the password of ACL user $user is empty" >&2
    exit 1
  fi
  hash="$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)"
  sed -i "s/{{$user}}/$hash/g" "$tmp"
done
if grep -o '{{[^}]*}}' "$tmp" >&2; then
  echo "render-acl: no password file in $passwords for the users above" >&2
  exit 1
fi
mv "$tmp" "$out"
echo "render-acl: $(grep -c '^user ' "$out") ACL users written to $out"
