#!/usr/bin/env bash
# Predict on phantoms the main job never saw, from clicks in the three point forms.
# Usage: bash benchmarks/predict_unseen_check.sh DIR   (DIR holds run/ from
#        `extremefast train --data synthetic --out DIR/run`; outputs are written in DIR)
set -euo pipefail
cd "${1:?give the folder that holds run/}"
rm -rf unseen pts_vox pts_ras pts_lps pred_vox pred_ras pred_lps
extremefast data synthetic --cases 4 --seed 77 --out unseen
mkdir -p pts_vox pts_ras pts_lps
for f in unseen/labelsTr/*.nii.gz; do n=$(basename $f .nii.gz)
  extremefast points --labels $f --label 1 --space voxel --out pts_vox/$n.json > /dev/null
  extremefast points --labels $f --label 1 --space RAS --out pts_ras/$n.json > /dev/null
  extremefast points --labels $f --label 1 --space LPS --slicer --out pts_lps/$n.mrk.json > /dev/null
done
for form in vox ras lps; do
  /usr/bin/time -f "predict $form: %e s" extremefast predict --checkpoint run/model.pt --image unseen/imagesTr --points pts_$form --out pred_$form > /dev/null
done
python - <<'PY'
import numpy as np, nibabel as nib, glob, os
for f in sorted(glob.glob("unseen/imagesTr/*.nii.gz")):
    n = os.path.basename(f)
    img = nib.load(f)
    m = [nib.load(f"pred_{k}/{n}") for k in ("vox", "ras", "lps")]
    same = all(np.array_equal(m[0].get_fdata(), x.get_fdata()) for x in m[1:])
    print(n, "shape", m[0].shape == img.shape, "affine equal", all(np.array_equal(x.affine, img.affine) for x in m), "3 forms identical", same)
PY
extremefast evaluate --pred pred_vox --data unseen --organ spleen
extremefast predict --checkpoint run/model.pt --image unseen/imagesTr --points pts_vox --out pred_refine --refine > /dev/null
extremefast evaluate --pred pred_refine --data unseen --organ spleen
