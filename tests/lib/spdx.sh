# SPDX-License-Identifier: GPL-2.0-or-later
# spdx.sh - the licence map of docs/licensing.md, sourced by check-spdx.sh
# and add-spdx.sh (one place for which file carries which licence and how
# its comment is written).

SPDX_LIBRARY=LGPL-2.1-or-later
SPDX_PROGRAMS=GPL-2.0-or-later

# spdx_files: the files that carry an SPDX line, one per line, from the
# files git knows (tracked and new, not ignored).  Not: the licence texts,
# Markdown documents (docs/licensing.md covers them), fuzz seed corpora and
# other data.
spdx_files() {
  git ls-files --cached --others --exclude-standard | sort -u | while IFS= read -r f; do
    [ -f "$f" ] || continue
    case $f in
      tests/fuzz/corpus/*|*.md|COPYING*|LICENSE*|.gitignore|*/.gitignore) continue ;;
      *.c|*.h|*.sh|*.py|*.t|*.in|*.conf|*.config|*.map|*.example|*.rules|*.service) ;;
      Makefile|*/Makefile|*.mk|.ci/*|docs/man/*.[1-8]) ;;
      *) continue ;;
    esac
    echo "$f"
  done
}

# spdx_licence FILE: the SPDX identifier FILE must carry.  The library
# (libdism, its public header, the disk engine and the shared layer it is
# built from) is LGPL; the programs, tests, build and system files GPL.
spdx_licence() {
  case $1 in
    userspace/lib/*|userspace/include/*|nbd-server/engine/*|common/*|docs/man/DismApi.3)
      echo "$SPDX_LIBRARY" ;;
    *) echo "$SPDX_PROGRAMS" ;;
  esac
}

# spdx_line FILE: the SPDX line as FILE's language writes a comment.
spdx_line() {
  local id
  id=$(spdx_licence "$1")
  case $1 in
    *.c|*.h|*.map)    echo "/* SPDX-License-Identifier: $id */" ;;
    docs/man/*.[1-8]) echo ".\\\" SPDX-License-Identifier: $id" ;;
    *)                echo "# SPDX-License-Identifier: $id" ;;
  esac
}

# spdx_has FILE: FILE names a licence in its first five lines (prints it).
spdx_has() {
  head -n 5 "$1" | sed -n 's/.*SPDX-License-Identifier: *\([A-Za-z0-9.+-]*\).*/\1/p' | head -n 1 | grep .
}
