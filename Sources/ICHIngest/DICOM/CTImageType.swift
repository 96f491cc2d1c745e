/// What Image Type (0008,0008) says about a CT object, and whether ichd scores it.
///
/// The values, as PS3.3 defines them: value 1 ORIGINAL or DERIVED (MIXED only in multi-frame objects whose frames
/// differ), value 2 PRIMARY or SECONDARY. For CT Image Storage value 3 is AXIAL or LOCALIZER (C.8.2.1.1.1; "axial"
/// there means any cross-section, so the plane itself is checked from Image Orientation); for Enhanced CT it is the
/// Image Flavor (C.8.16.1.3: VOLUME, ANGIO, LOCALIZER, ...) and value 4 the Derived Pixel Contrast (C.8.16.1.4:
/// NONE for a plain reconstruction, MAXIMUM, MINIMUM, ...). Vendors add private values from 4 on (Siemens
/// `CT_SOM5 SPI`, `CT_SOM5 TOP` for a topogram) and name post-processing there (MPR, MIP, 3D, REFORMATTED, ...).
///
/// DERIVED alone is no reason to refuse: a slice reconstructed again from the raw data, or stored lossy once and
/// decompressed, is DERIVED\PRIMARY\AXIAL and still an axial slice in Hounsfield units. What is refused is
/// SECONDARY (made on a workstation from other images), localizers, and derivations that are not an axial slice
/// of the scan (reformats, projections, renderings, material maps).
public enum CTImageType {
    /// Value 3 and later: words that mark a localizer/scout (vendor names included: Siemens topogram, Philips
    /// surview, GE scout, Canon scanogram).
    static let localizerTerms: [String] = ["LOCALIZER", "SCOUT", "TOPOGRAM", "SCANOGRAM", "SURVIEW", "CT SOM5 TOP"]

    /// Value 3 and later: post-processing that is not an axial slice of the scan (CID 7203 Image Derivation names
    /// the same operations: multiplanar and curved reformatting, volume and surface rendering, maximum and
    /// minimum intensity projection). Matched as whole words after `_` becomes a space. Plain VOLUME is not here:
    /// it is the Enhanced CT Image Flavor of an ordinary volume acquisition.
    static let derivationTerms: [String] = [
        "MPR", "CURVED", "CPR", "REFORMATTED", "REFORMAT", "MIP", "MAX IP", "MINIP", "MIN IP", "MNIP",
        "VOLUME RENDERING", "VOLUME RENDER", "VOLUME RENDERED", "SURFACE RENDERING", "SURFACE RENDER", "SSD", "3D",
        "PROJECTION IMAGE", "PROJECTION",
    ]

    /// Enhanced CT value 4 (Derived Pixel Contrast): projections over several slices.
    static let enhancedProjectionTerms: [String] = ["MAXIMUM", "MINIMUM"]

    /// Multi-energy CT value 4 (C.8.2.1.1.1) whose pixels are not tissue Hounsfield units (virtual monoenergetic
    /// images, VMI, and material-removed images, MAT_REMOVED, still are).
    static let nonHounsfieldTerms: [String] = ["MAT SPECIFIC", "MAT FRACTIONAL", "EFFECTIVE ATOMIC NUMBER", "ELECTRON DENSITY", "VALUE BASED"]

    /// Why `imageType` is not a slice ichd scores, naming the value at fault; nil when it is one.
    /// An absent or empty Image Type is accepted (files converted by older tools omit it); the plane is checked
    /// separately from Image Orientation (Patient).
    public static func refusal(_ imageType: [String], enhanced: Bool) -> String? {
        let values = imageType.map(normalised)
        guard values.contains(where: { !$0.isEmpty }) else { return nil }
        let whole = "Image Type " + imageType.joined(separator: "\\")
        func value(_ index: Int) -> String { "value \(index + 1) \(imageType[index].trimmingSpaces)" }

        let first = values[0]
        if first != "ORIGINAL" && first != "DERIVED" {
            let why = first == "MIXED" ? "frames of different kinds" : "ORIGINAL or DERIVED expected"
            return "\(value(0)): \(why) (\(whole))"
        }
        if values.count > 1, !values[1].isEmpty, values[1] != "PRIMARY" {
            let why = values[1] == "SECONDARY" ? "a secondary image made from other images, not a reconstruction of the scan"
                : "PRIMARY expected"
            return "\(value(1)): \(why) (\(whole))"
        }
        for index in values.indices.dropFirst(2) {
            let v = values[index]
            if contains(v, anyOf: localizerTerms) { return "localizer/scout image, \(value(index)) (\(whole))" }
            if contains(v, anyOf: derivationTerms) {
                return "a reformat, projection or rendering, not an axial slice of the scan: \(value(index)) (\(whole))"
            }
            if index == 3, contains(v, anyOf: nonHounsfieldTerms) {
                return "a multi-energy material image whose pixels are not Hounsfield units: \(value(index)) (\(whole))"
            }
            if enhanced, index == 3, contains(v, anyOf: enhancedProjectionTerms) {
                return "a projection over several slices (Derived Pixel Contrast), \(value(index)) (\(whole))"
            }
        }
        if !enhanced, values.count > 2, !values[2].isEmpty, values[2] != "AXIAL" {
            return "\(value(2)): AXIAL expected for CT Image Storage (\(whole))"
        }
        return nil
    }

    /// Upper case, `_` and runs of spaces as one space, trimmed: `VOLUME_RENDER` and `volume render` compare equal.
    static func normalised(_ value: String) -> String {
        value.uppercased().replacingUnderscores.split(separator: " ").joined(separator: " ")
    }

    /// Whole-word match: `MIP` is found in `THICK MIP` but not in `MIPMAP`.
    static func contains(_ value: String, anyOf terms: [String]) -> Bool {
        let padded = " " + value + " "
        return terms.contains { padded.contains(" " + $0 + " ") }
    }
}

extension String {
    fileprivate var replacingUnderscores: String { String(map { $0 == "_" || $0 == "-" ? " " : $0 }) }
}
