#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# mkhives.sh DIR [PAD] - the test registry hives of tests/t/11-imageinfo-windows.t:
# DIR/SOFTWARE and DIR/SYSTEM, hivex's minimal hive (../shared/corpus/hive)
# with the keys below merged in by hivexregedit.  PAD > 0 adds PAD keys of
# 16 values each under SOFTWARE\Classes, to make a hive the size of a real
# one (benchmarks).  What the test expects is what these .reg texts set.
set -euo pipefail
DIR=$1 PAD=${2:-0}
MINIMAL=${CORPUS:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/corpus}/hive/minimal
mkdir -p "$DIR"
# mkhive OUT: the minimal hive with the .reg on stdin merged in
mkhive() { cp "$MINIMAL" "$1" && chmod u+w "$1" && hivexregedit --merge "$1" /dev/stdin; }

mkhive "$DIR/SOFTWARE" <<'EOF'
Windows Registry Editor Version 5.00

[\Microsoft]

[\Microsoft\Windows NT]

[\Microsoft\Windows NT\CurrentVersion]
"ProductName"="Windows Server 2022 Datacenter"
"EditionID"="ServerDatacenter"
"InstallationType"="Server"
"CurrentMajorVersionNumber"=dword:0000000a
"CurrentMinorVersionNumber"=dword:00000000
"CurrentVersion"="6.3"
"CurrentBuildNumber"="20348"
"UBR"=dword:00000ed3
"CSDVersion"="Service Pack 2"
"SystemRoot"="C:\\Windows"
EOF
# ControlSet001 is a decoy: Select\Current names ControlSet002
mkhive "$DIR/SYSTEM" <<'EOF'
Windows Registry Editor Version 5.00

[\Select]
"Current"=dword:00000002
"Default"=dword:00000001

[\ControlSet001]

[\ControlSet001\Control]

[\ControlSet001\Control\Session Manager]

[\ControlSet001\Control\Session Manager\Environment]
"PROCESSOR_ARCHITECTURE"="x86"

[\ControlSet002]

[\ControlSet002\Control]

[\ControlSet002\Control\ProductOptions]
"ProductType"="ServerNT"
"ProductSuite"=hex(7):54,00,65,00,72,00,6d,00,69,00,6e,00,61,00,6c,00,20,00,53,00,65,00,72,00,76,00,65,00,72,00,00,00,00,00

[\ControlSet002\Control\Session Manager]

[\ControlSet002\Control\Session Manager\Environment]
"PROCESSOR_ARCHITECTURE"="ARM64"

[\ControlSet002\Control\MUI]

[\ControlSet002\Control\MUI\UILanguages]

[\ControlSet002\Control\MUI\UILanguages\en-US]
"LCID"=dword:00000409

[\ControlSet002\Control\MUI\UILanguages\fr-FR]
"LCID"=dword:0000040c

[\ControlSet002\Control\Nls]

[\ControlSet002\Control\Nls\Language]
"InstallLanguage"="040C"
"Default"="0409"

[\ControlSet002\Enum]

[\ControlSet002\Enum\Root]

[\ControlSet002\Enum\Root\ACPI_HAL]

[\ControlSet002\Enum\Root\ACPI_HAL\0000]
"HardwareID"=hex(7):61,00,63,00,70,00,69,00,61,00,70,00,69,00,63,00,00,00,00,00
EOF
if [ "$PAD" -gt 0 ]; then
  { printf 'Windows Registry Editor Version 5.00\n\n[\\Classes]\n\n'
    for ((k = 0; k < PAD; k++)); do
      printf '[\\Classes\\.pad%06d]\n' "$k"
      for v in 0 1 2 3 4 5 6 7 8 9 a b c d e f; do
        printf '"Value%s"="padding text for a key of a realistic hive %06d"\n' "$v" "$k"
      done
      printf '\n'
    done; } > "$DIR/pad.reg"
  hivexregedit --merge "$DIR/SOFTWARE" "$DIR/pad.reg"
  rm -f "$DIR/pad.reg"
fi
