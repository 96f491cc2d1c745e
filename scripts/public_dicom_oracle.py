"""Independent reference values for the public test files: parsed by pydicom, stored values decoded with
struct (no numpy), HU by slope/intercept. ichd's tests compare their own DCMTK-based reading with these."""
import json, os, struct, sys
import pydicom

def stored_values(ds):
    bits, signed = ds.BitsAllocated, ds.PixelRepresentation == 1
    count = ds.Rows * ds.Columns * int(getattr(ds, "NumberOfFrames", 1) or 1)
    fmt = ("<" if ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.2" else ">") + str(count) + (
        {8: "b", 16: "h"}[bits] if signed else {8: "B", 16: "H"}[bits])
    return list(struct.unpack(fmt, ds.PixelData[: count * bits // 8]))

out = {}
for name in ["CT_small.dcm", "MR_small.dcm"]:
    ds = pydicom.dcmread(os.path.join(sys.argv[1], name))
    values = stored_values(ds)
    slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
    hu = [v * slope + intercept for v in values]
    out[name] = {
        "rows": ds.Rows, "columns": ds.Columns, "sop_instance_uid": str(ds.SOPInstanceUID),
        "first_stored": values[:16], "hu_min": min(hu), "hu_max": max(hu), "hu_mean": sum(hu) / len(hu),
        # fraction strictly inside the brain window (level 40, width 80): 0 < HU < 80
        "brain_coverage": sum(1 for h in hu if 0 < h < 80) / len(hu),
    }
json.dump(out, sys.stdout, indent=1)
