#!/usr/bin/env bash
# Fails when a C++ source of the project (tracked, or new and not ignored) differs from what
# clang-format makes of it with the repository's .clang-format. Generated code (protoc output,
# build folders) is not checked.
#
# Usage: scripts/check-format.sh          check; lists the files to fix
#        scripts/check-format.sh --fix    reformat those files in place
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t candidates < <(git ls-files --cached --others --exclude-standard -- '*.cc' '*.h')
else
  mapfile -t candidates < <(find . -path './build*' -prune -o \( -name '*.cc' -o -name '*.h' \) \
    -type f -print | sed 's|^\./||')
fi

files=()
for f in "${candidates[@]}"; do
  case "$f" in
    *.pb.cc | *.pb.h | build*/* | */third_party/* | third_party/*) continue ;;
  esac
  [[ -f "$f" ]] && files+=("$f")
done

if ((${#files[@]} == 0)); then
  echo "check-format: no C++ sources found"
  exit 0
fi

if [[ "${1:-}" == --fix ]]; then
  clang-format -i "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]} > 0)); then
  echo "check-format: ${#bad[@]} of ${#files[@]} files are not clang-formatted:" >&2
  shown=0
  for f in "${bad[@]}"; do
    echo "  $f" >&2
    # The first lines of the change for a few files, so a CI log shows what is wrong.
    if ((shown++ < 5)); then
      clang-format "$f" | diff -u --label "$f" --label "$f (clang-format)" "$f" - |
        head -20 | sed 's/^/    /' >&2 || true
    fi
  done
  echo "check-format: fix with: clang-format -i ${bad[*]}   (or scripts/check-format.sh --fix)" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files are clang-formatted"
