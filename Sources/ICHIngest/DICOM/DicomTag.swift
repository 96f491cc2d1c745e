/// A DICOM attribute tag (group, element), the way the standard's data dictionary names it.
public struct DicomTag: Hashable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// "(gggg,eeee)" as in DCMTK path syntax and dcmdump output.
    public var description: String {
        "(" + Self.hex4(group) + "," + Self.hex4(element) + ")"
    }

    private static func hex4(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 4 - s.count) + s
    }

    public static let imageType = DicomTag(0x0008, 0x0008)
    public static let sopClassUID = DicomTag(0x0008, 0x0016)
    public static let sopInstanceUID = DicomTag(0x0008, 0x0018)
    public static let accessionNumber = DicomTag(0x0008, 0x0050)
    public static let modality = DicomTag(0x0008, 0x0060)
    public static let sliceThickness = DicomTag(0x0018, 0x0050)
    public static let studyInstanceUID = DicomTag(0x0020, 0x000D)
    public static let seriesInstanceUID = DicomTag(0x0020, 0x000E)
    public static let instanceNumber = DicomTag(0x0020, 0x0013)
    public static let imagePositionPatient = DicomTag(0x0020, 0x0032)
    public static let imageOrientationPatient = DicomTag(0x0020, 0x0037)
    public static let samplesPerPixel = DicomTag(0x0028, 0x0002)
    public static let photometricInterpretation = DicomTag(0x0028, 0x0004)
    public static let numberOfFrames = DicomTag(0x0028, 0x0008)
    public static let rows = DicomTag(0x0028, 0x0010)
    public static let columns = DicomTag(0x0028, 0x0011)
    public static let pixelSpacing = DicomTag(0x0028, 0x0030)
    public static let bitsAllocated = DicomTag(0x0028, 0x0100)
    public static let bitsStored = DicomTag(0x0028, 0x0101)
    public static let highBit = DicomTag(0x0028, 0x0102)
    public static let pixelRepresentation = DicomTag(0x0028, 0x0103)
    public static let rescaleIntercept = DicomTag(0x0028, 0x1052)
    public static let rescaleSlope = DicomTag(0x0028, 0x1053)
    public static let pixelData = DicomTag(0x7FE0, 0x0010)

    // Enhanced multi-frame functional-group macros that carry per-frame attributes.
    public static let pixelMeasuresSequence = DicomTag(0x0028, 0x9110)
    public static let planePositionSequence = DicomTag(0x0020, 0x9113)
    public static let planeOrientationSequence = DicomTag(0x0020, 0x9116)
    public static let pixelValueTransformationSequence = DicomTag(0x0028, 0x9145)
    public static let sharedFunctionalGroupsSequence = DicomTag(0x5200, 0x9229)
    public static let perFrameFunctionalGroupsSequence = DicomTag(0x5200, 0x9230)
}
