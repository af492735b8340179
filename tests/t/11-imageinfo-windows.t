#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# /Get-ImageInfo tells which Windows an image holds (issue 14): test hives
# made here with hivexregedit from hivex's minimal hive, placed at
# Windows\System32\config of generated VHD, VHDX and WIM images; every field
# read (CLI text, CLI JSON, DismGetImageInfo) equals what the .reg set.
# Images without Windows give what they can and no error; damaged hives a
# warning naming the file, never a crash.
# needs-root: builds its disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd hivexregedit hivexget wimlib-imagex wiminfo qemu-img mkntfs ntfs-3g
need_file "$DISM" "$TBIN/imageinfo-api" "$CORPUS/hive/minimal"

CFG=$TMPD/config
bash "$ROOT/tests/lib/mkhives.sh" "$CFG" || not_ok "hivexregedit makes the test hives"
check "the SOFTWARE test hive is made" test "$(hivexget "$CFG/SOFTWARE" '\Microsoft\Windows NT\CurrentVersion' UBR)" = 3795
check "the SYSTEM test hive is made" test "$(hivexget "$CFG/SYSTEM" '\ControlSet002\Control\ProductOptions' ProductType)" = ServerNT

# ---- the images ------------------------------------------------------------------------
MKWIN_CONFIG=$CFG bash "$ROOT/tests/lib/mkwinimg.sh" gpt "$TMPD/win.raw" ||
  { not_ok "build the GPT Windows disk"; exit 1; }
make_vhdx "$TMPD/win.raw" "$TMPD/win.vhdx"
make_vhd "$TMPD/win.raw" "$TMPD/win.vhd"
# a WIM whose XML has no WINDOWS element (wimlib writes one at capture:
# removed, so the image's own hives must be read), names in another case
T=$TMPD/tree
mkdir -p "$T/WINDOWS/system32/CONFIG"
cp "$CFG"/* "$T/WINDOWS/system32/CONFIG/"
echo data > "$T/readme.txt"
wimlib-imagex capture "$T" "$TMPD/win.wim" "Srv" >/dev/null
wiminfo "$TMPD/win.wim" 1 --image-property WINDOWS= >/dev/null
check "the test WIM's XML has no Windows facts" \
  test -z "$(wiminfo "$TMPD/win.wim" 1 | grep -i 'Edition\|Product Name')"

# the fields as the .reg set them
EXPECT_TEXT="WIM Bootable : [^
]*
Architecture : arm64
Hal : acpiapic
Version : 10.0.20348
ServicePack Build : 3795
ServicePack Level : 2
Edition : ServerDatacenter
Installation : Server
ProductType : ServerNT
ProductSuite : Terminal Server
System Root : Windows
Directories : [0-9]+
Files : [0-9]+
Created : [^
]*
Modified : [^
]*
Languages :
        en-US
        fr-FR \\(Default\\)"
for img in win.vhdx win.vhd win.wim; do
  I=$TMPD/$img
  OUT=$(dism /Get-ImageInfo /ImageFile:"$I" /Index:1 2>&1); RC=$?
  is "$img: /Get-ImageInfo exits 0" "$RC" 0
  like "$img: every field in DISM's layout" "$OUT" "$EXPECT_TEXT"
  check "$img: no warning" test -z "$(grep -i warning <<<"$OUT")"
  JSON=$(dism /Get-ImageInfo /ImageFile:"$I" /Index:1 /Format:json)
  is "$img: JSON carries the same fields" "$($PY -c '
import json, sys
i = json.load(sys.stdin)["images"][0]
keys = ("architecture", "product_name", "edition", "installation", "hal", "product_type",
        "product_suite", "system_root", "version", "full_version", "servicepack_build",
        "servicepack_level", "languages", "default_language")
print(";".join(str(i[k]) for k in keys), i["files"] > 0, i["directories"] >= 3)' <<<"$JSON")" \
    "arm64;Windows Server 2022 Datacenter;ServerDatacenter;Server;acpiapic;ServerNT;Terminal Server;Windows;10.0.20348;10.0.20348.3795;3795;2;['en-US', 'fr-FR'];fr-FR True True"
  API=$("$TBIN/imageinfo-api" "$I")
  is "$img: DismGetImageInfo fills DismImageInfo" \
    "$(grep -E '^(arch|product_name|edition|installation|hal|product_type|product_suite|system_root|version|spbuild|splevel|languages|default_language)=' <<<"$API" | tr '\n' ';')" \
    "arch=12;product_name=Windows Server 2022 Datacenter;edition=ServerDatacenter;installation=Server;hal=acpiapic;product_type=ServerNT;product_suite=Terminal Server;system_root=Windows;version=10.0.20348;spbuild=3795;splevel=2;languages=en-US,fr-FR;default_language=fr-FR;"
done
API=$("$TBIN/imageinfo-api" "$TMPD/win.vhdx")
like "VHDX: CustomizedInfo is NULL as in Microsoft's API" "$API" "customized=none"
API=$("$TBIN/imageinfo-api" "$TMPD/win.wim")
like "WIM: CustomizedInfo counts the image (3 dirs + root, 3 files)" "$API" "dirs=4"$'\n'"files=3"
OUT=$(dism /Get-ImageInfo /ImageFile:"$TMPD/win.vhdx" 2>&1)
like "VHDX: the counts are the Windows volume's (Windows, System32, config; 4 files)" "$OUT" \
  "Directories : 3"$'\n'"Files : 4"

# a WIM of two images, one with Windows, one without: each gets its own
mkdir -p "$TMPD/plain"; echo x > "$TMPD/plain/x.txt"
cp "$TMPD/win.wim" "$TMPD/multi.wim"
wimlib-imagex append "$TMPD/plain" "$TMPD/multi.wim" "Data" >/dev/null
is "two-image WIM: image 1's Windows, image 2 none (JSON, no /Index)" "$(dism /Get-ImageInfo /ImageFile:"$TMPD/multi.wim" /Format:json | $PY -c '
import json, sys
print([(i["index"], i["edition"], i["architecture"], i["files"]) for i in json.load(sys.stdin)["images"]])')" \
  "[(1, 'ServerDatacenter', 'arm64', 3), (2, None, '<undefined>', 1)]"

# a VHDX is read in place: no loop device, no mount
loops_before=$(losetup -a | wc -l) mounts_before=$(grep -c ntfs /proc/mounts)
t0=$(date +%s%N)
dism /Get-ImageInfo /ImageFile:"$TMPD/win.vhdx" >/dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "VHDX: no loop device made, nothing mounted" "$(losetup -a | wc -l) $(grep -c ntfs /proc/mounts)" "$loops_before $mounts_before"
diag "VHDX: /Get-ImageInfo took ${ms} ms (figures: docs/benchmarks.md; the suite never asserts on time)"

# ---- images without Windows --------------------------------------------------------------
no_windows() {  # no_windows WHAT IMAGE EXTRA_REGEX
  OUT=$(dism /Get-ImageInfo /ImageFile:"$2" /Index:1 2>&1); RC=$?
  is "$1: exit 0" "$RC" 0
  like "$1: <undefined> for what it lacks" "$OUT" "Architecture : <undefined>"$'\n'"Hal : <undefined>"$'\n'"Version : <undefined>"$'\n'"Edition : <undefined>"$'\n'"Installation : <undefined>"$'\n'"ProductType : <undefined>"$'\n'"ProductSuite : <undefined>"$'\n'"System Root : <undefined>"
  like "$1: the size and counts it can" "$OUT" "$3"
  check "$1: no warning" test -z "$(grep -i warning <<<"$OUT")"
}
bash "$ROOT/tests/lib/mkwinimg.sh" data "$TMPD/data.raw" && make_vhdx "$TMPD/data.raw" "$TMPD/data.vhdx"
no_windows "NTFS data disk (VHDX)" "$TMPD/data.vhdx" "Directories : 0"$'\n'"Files : 1"$'\n'"Created : [0-9]"
bash "$ROOT/tests/lib/mkwinimg.sh" fatonly "$TMPD/fat.raw" && make_vhd "$TMPD/fat.raw" "$TMPD/fat.vhd"
no_windows "FAT only, no NTFS (VHD)" "$TMPD/fat.vhd" "Size : 25,"
truncate -s 16M "$TMPD/ext.raw"
mkfs.ext4 -q -F "$TMPD/ext.raw" && make_vhdx "$TMPD/ext.raw" "$TMPD/ext.vhdx"
no_windows "a Linux file system (VHDX)" "$TMPD/ext.vhdx" "Languages : <undefined>"
W=$(corpus_file wim/imagex-archive3-xpress.wim)
no_windows "ImageX corpus WIM" "$W" "Directories : 0"$'\n'"Files : 8"
V=$(corpus_file vhdx/dissect-win10-dynamic.vhdx)
no_windows "corpus VHDX made by Windows (NTFS, no \\Windows)" "$V" "Files : [0-9]+"

# ---- damaged hives ---------------------------------------------------------------------
BAD=$TMPD/bad
mkdir -p "$BAD"
head -c 6000 "$CFG/SOFTWARE" > "$BAD/SOFTWARE"            # truncated in its first bin
cp "$CFG/SYSTEM" "$BAD/SYSTEM"
printf '\xff\xff\xff\xff' | dd of="$BAD/SYSTEM" bs=1 seek=508 conv=notrunc status=none  # header checksum
MKWIN_CONFIG=$BAD bash "$ROOT/tests/lib/mkwinimg.sh" gpt "$TMPD/bad.raw" && make_vhdx "$TMPD/bad.raw" "$TMPD/bad.vhdx"
OUT=$(dism /Get-ImageInfo /ImageFile:"$TMPD/bad.vhdx" 2>&1); RC=$?
is "damaged hives (VHDX): exit 0" "$RC" 0
like "  a warning names the truncated SOFTWARE" "$OUT" 'Warning: the registry hive Windows\\System32\\config\\SOFTWARE of [^
]*bad.vhdx'
like "  a warning names SYSTEM with a bad checksum" "$OUT" 'Warning: the registry hive Windows\\System32\\config\\SYSTEM of [^
]*bad.vhdx'
like "  and it still prints what it can" "$OUT" "Directories : 3"$'\n'"Files : 4"
like "  JSON lists the warnings" "$(dism /Get-ImageInfo /ImageFile:"$TMPD/bad.vhdx" /Format:json 2>&1)" \
  '"warnings": \["the registry hive [^"]*SOFTWARE[^"]*", "the registry hive [^"]*SYSTEM'
# garbage and a good SYSTEM: SOFTWARE is warned about, SYSTEM still read
T=$TMPD/tree2
mkdir -p "$T/Windows/System32/config"
head -c 65536 /dev/urandom > "$T/Windows/System32/config/SOFTWARE"
cp "$CFG/SYSTEM" "$T/Windows/System32/config/SYSTEM"
wimlib-imagex capture "$T" "$TMPD/bad.wim" "Bad" >/dev/null
wiminfo "$TMPD/bad.wim" 1 --image-property WINDOWS= >/dev/null
OUT=$(dism /Get-ImageInfo /ImageFile:"$TMPD/bad.wim" /Index:1 2>&1); RC=$?
is "garbage SOFTWARE (WIM): exit 0" "$RC" 0
like "  a warning names it" "$OUT" 'Warning: the registry hive Windows\\System32\\config\\SOFTWARE of image 1 of [^
]*bad.wim'
like "  SYSTEM's fields are still read" "$OUT" "Architecture : arm64"
like "  SOFTWARE's are <undefined>" "$OUT" "Edition : <undefined>"
# every truncation length of a hive's first pages: never a crash
for n in 0 1 512 4095 4096 4097 4200 8191; do
  head -c "$n" "$CFG/SYSTEM" > "$T/Windows/System32/config/SYSTEM"
  wimlib-imagex capture "$T" "$TMPD/cut.wim" "Cut" >/dev/null 2>&1
  wiminfo "$TMPD/cut.wim" 1 --image-property WINDOWS= >/dev/null
  "$DISM" /Get-ImageInfo /ImageFile:"$TMPD/cut.wim" /Index:1 >/dev/null 2>&1; rc=$?
  is "SYSTEM cut to $n bytes: exit 0 (no crash)" "$rc" 0
  rm -f "$TMPD/cut.wim"
done

