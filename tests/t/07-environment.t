#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Every environment variable the programs read is documented in an
# ENVIRONMENT section of the man pages (dism(8), dism-nbd-server(8)), and
# every option of dism-nbd-server --help in its man page and in
# docs/nbd-server.md: the lists are taken from the sources and the binary,
# so neither side can drift.  Needs neither root nor a device.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd groff awk grep sed
need_file "$BIN/dism-nbd-server"

srcs=()
while IFS= read -r f; do srcs+=("$f"); done < <(
  find "$ROOT/nbd-server" "$ROOT/userspace" "$ROOT/common" -name '*.[ch]' 2>/dev/null | sort)

# Functions that hand a parameter to getenv (dism_find_tool, dism_env_long, ...):
# the names their callers pass are environment variables too.  House style
# puts a function's name at the start of a line.
wrappers=$(awk '
  /^[A-Za-z_][A-Za-z0-9_ *]*\(/ && !/^#/ { fn = $0; sub(/\(.*/, "", fn); sub(/.*[ *]/, "", fn) }
  /(^|[^A-Za-z0-9_])getenv[ \t]*\([ \t]*[a-z_][a-z0-9_]*[ \t]*\)/ { print fn }
' "${srcs[@]}" | sort -u)
callers=$(printf '%s\n' getenv secure_getenv $wrappers | paste -sd'|')
# getenv("NAME") and wrapper("NAME", ...); getenv(MACRO) through #define MACRO "NAME".
names=$(grep -ohE "(^|[^A-Za-z0-9_])($callers)[ \t]*\([ \t]*\"[A-Za-z_][A-Za-z0-9_]*\"" "${srcs[@]}" |
        sed -E 's/.*"([A-Za-z0-9_]+)"$/\1/')
for m in $(grep -ohE "(^|[^A-Za-z0-9_])getenv[ \t]*\([ \t]*[A-Z][A-Z0-9_]*[ \t]*\)" "${srcs[@]}" |
           sed -E 's/.*\([ \t]*([A-Z0-9_]+).*/\1/' | sort -u); do
  names+=$'\n'$(grep -ohE "^#[ \t]*define[ \t]+$m[ \t]+\"[A-Za-z0-9_]+\"" "${srcs[@]}" | sed -E 's/.*"(.*)"/\1/')
done
names=$(grep -v '^$' <<<"$names" | sort -u)
diag "variables read: $(tr '\n' ' ' <<<"$names")"
diag "through: $(tr '\n' ' ' <<<"$wrappers")"
like "the sources' variables are found, through wrappers too (DISM_NTFS3G, DISM_SERVER_STOP_MS)" \
  "$(tr '\n' ' ' <<<"$names")" "DISM_NTFS3G .*DISM_RUN_DIR .*DISM_SERVER_STOP_MS .*LISTEN_FDS "

# The ENVIRONMENT sections (to the next .SH), fonts and escapes removed.
envdoc=$(awk '/^\.SH/ { on = ($2 == "ENVIRONMENT") } on' "$ROOT"/docs/man/*.[1-8] |
         sed -E 's/\\f(\(..|\[[^]]*\]|.)//g; s/\\-/-/g')
missing=
for n in $names; do
  grep -qE "(^|[^A-Za-z0-9_])$n([^A-Za-z0-9_]|$)" <<<"$envdoc" || missing+="$n "
done
is "every variable read is in a man page's ENVIRONMENT section" "$missing" ""

# The test hooks: DISM_TEST_* in a subsection of their own.
hooks=$(awk '/^\.SH/ { on = ($2 == "ENVIRONMENT"); sub_ = 0 } /^\.SS/ { sub_ = /[Tt]est hooks/ } on && sub_' \
        "$ROOT"/docs/man/dism-nbd-server.8 | sed -E 's/\\f(\(..|\[[^]]*\]|.)//g')
for n in $(grep '^DISM_TEST_' <<<"$names"); do
  like "  $n is under Test hooks in dism-nbd-server(8)" "$hooks" "$n"
done

# dism-nbd-server's options: --help against the man page and docs/nbd-server.md.
opts=$("$BIN/dism-nbd-server" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
man=$(sed -E 's/\\f(\(..|\[[^]]*\]|.)//g; s/\\-/-/g' "$ROOT/docs/man/dism-nbd-server.8")
md=$(cat "$ROOT/docs/nbd-server.md")
miss_man= miss_md=
for o in $opts; do
  grep -qE -- "$o([^a-z0-9-]|$)" <<<"$man" || miss_man+="$o "
  grep -qE -- "$o([^a-z0-9-]|$)" <<<"$md" || miss_md+="$o "
done
like "dism-nbd-server --help lists options" "$(tr '\n' ' ' <<<"$opts")" "--overlay .*--unix"
is "  each is in dism-nbd-server(8)" "$miss_man" ""
is "  each is in docs/nbd-server.md" "$miss_md" ""

for p in "$ROOT"/docs/man/*.[1-8]; do
  is "groff renders ${p#$ROOT/} without a warning" "$(groff -man -ww -z -Tutf8 "$p" 2>&1)" ""
done
